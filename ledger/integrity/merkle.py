"""RFC 9162 Merkle trees: hashing, an incremental tree, inclusion and consistency proofs.

This is the tree the notary builds over each partition's accepted events (DESIGN.md, Integrity
item 3). The hashing is RFC 9162 §2.1 (identical to RFC 6962 §2), so any Certificate
Transparency verifier can check our proofs and we can check theirs:

* ``leaf_hash(d)   = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* the root of the empty tree is ``SHA-256()`` of the empty string;
* a tree of ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n`` (not
  the midpoint): the left subtree is always complete.

Invariants of ``MerkleTree`` (checked by the tests against a naive transcription of the RFC):

* ``_levels[h]`` holds, in order, the roots of every complete subtree of height ``h`` (covering
  leaves ``[j * 2**h, (j + 1) * 2**h)``), 32 bytes each; there are exactly ``size >> h`` of them.
  ``_levels[0]`` is the leaf hashes. This cache is what makes ``root(size)`` and every proof
  O(log n): any range the RFC recursion visits is a few complete subtrees, each one lookup.
* Appending only ever adds nodes; nothing already stored changes, so roots of past sizes stay
  answerable until ``truncate`` removes them.

Memory: fewer than ``2 * size`` hashes of 32 bytes, kept in one ``bytearray`` per level (about
64 bytes per leaf, with no per-object overhead).

Never: no I/O, no clock, no environment, no randomness. Callers hand in leaf hashes; this module
does not know what an event is. Verification needs nothing but the proof and the roots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from ledger.errors import RejectCode, RejectError, ValidationError

# MAX_TREE_LEAVES (the int64 range of Kafka offsets) and MAX_PROOF_HASHES (enough for every valid proof of
# such a tree) bound what a proof to verify may claim; both, and their relation, are in ledger.limits
from ledger.limits import HASH_BYTES, MAX_PROOF_HASHES, MAX_TREE_LEAVES

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of one leaf's data: SHA-256(0x00 || data)."""
    if not isinstance(data, bytes):
        raise ValidationError("data", data, f"must be bytes, got {type(data).__name__}")
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node. Requires two 32-byte hashes."""
    _check_hash("left", left)
    _check_hash("right", right)
    return _node(left, right)


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH over the given leaf hashes, in order; the empty tree's root when there are none."""
    return MerkleTree.from_leaf_hashes(hashes).root()


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes, able to prove any past state.

    Appending costs O(1) amortised hashes (a binary-counter carry, O(log n) at worst); ``root``,
    ``inclusion_proof`` and ``consistency_proof`` cost O(log n) lookups and at most O(log n)
    hashes, for any tree size up to the current one.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0

    @classmethod
    def from_leaf_hashes(cls, hashes: Iterable[bytes]) -> MerkleTree:
        """A tree holding exactly these leaf hashes, built level by level in O(n) hashes.

        This is how a notary restores its tree from stored leaf hashes after a restart.
        Requires every element to be a 32-byte ``bytes``.
        """
        leaves = list(hashes)
        for position, value in enumerate(leaves):
            _check_hash(f"hashes[{position}]", value)
        tree = cls()
        tree._size = len(leaves)
        level = bytearray(b"".join(leaves))
        tree._levels = [level]
        step = 2 * HASH_BYTES
        # Each pass pairs up the complete subtrees of one height; an odd last node waits for a
        # sibling that a later append will bring.
        while len(level) >= step:
            end = len(level) - len(level) % step
            with memoryview(level) as view:
                parents = b"".join(_node_pair(view[at : at + step]) for at in range(0, end, step))
            level = bytearray(parents)
            tree._levels.append(level)
        return tree

    @property
    def size(self) -> int:
        """How many leaves the tree holds."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash; return its 0-based leaf index. Requires a 32-byte hash."""
        _check_hash("leaf_hash", leaf_hash)
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        self._size += 1
        # Like a binary counter: each trailing zero bit of the new size is a height at which
        # the last two nodes are now a complete pair, so their parent becomes known.
        count = self._size
        height = 0
        while count & 1 == 0:
            parent = _node_pair(levels[height][-2 * HASH_BYTES :])
            height += 1
            if height == len(levels):
                levels.append(bytearray())
            levels[height] += parent
            count >>= 1
        return index

    def leaf_hash_at(self, index: int) -> bytes:
        """The leaf hash stored at ``index``. Requires 0 <= index < size."""
        _check_count("index", index, 0, self._size - 1)
        return self._complete_root(0, index)

    def subtree_root(self, height: int, position: int) -> bytes:
        """Root of the complete subtree of ``2**height`` leaves starting at leaf ``position << height``.
        Requires that subtree to be complete within the tree (``(position + 1) << height <= size``)."""
        _check_count("height", height, 0, max(len(self._levels) - 1, 0))
        _check_count("position", position, 0, (self._size >> height) - 1)
        return self._complete_root(height, position)

    def truncate(self, size: int) -> None:
        """Forget every leaf at or after ``size``. Requires 0 <= size <= current size.

        For a notary whose stored state ends earlier than its memory (a rolled-back batch).
        Complete subtrees inside the kept prefix stay cached; the rest is dropped.
        """
        _check_count("size", size, 0, self._size)
        for height, level in enumerate(self._levels):
            del level[(size >> height) * HASH_BYTES :]
        self._size = size

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all). Requires 0 <= size <= current size."""
        if size is None:
            size = self._size
        _check_count("size", size, 0, self._size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_root(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), leaf side first.

        Requires 1 <= size <= current size and 0 <= index < size.
        """
        _check_count("size", size, 1, self._size)
        _check_count("index", index, 0, size - 1)
        # Walk down from the root. The sibling of each subtree we descend into is one proof
        # element; the RFC lists them leaf side first, so reverse at the end.
        path: list[bytes] = []
        begin, end = 0, size
        while end - begin > 1:
            middle = begin + _split(end - begin)
            if index < middle:
                path.append(self._range_root(middle, end))
                end = middle
            else:
                path.append(self._range_root(begin, middle))
                begin = middle
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]); empty when the sizes are equal.

        Requires 1 <= old_size <= new_size <= current size. (From the empty tree there is
        nothing to prove: every tree extends it.)
        """
        _check_count("new_size", new_size, 1, self._size)
        _check_count("old_size", old_size, 1, new_size)
        # SUBPROOF(m, D[begin:end], b) unrolled: ``old_is_root`` is the RFC's b, true while the
        # subtree we are in still starts at leaf 0 and so its old root is the verifier's own.
        proof: list[bytes] = []
        begin, end, old_count = 0, new_size, old_size
        old_is_root = True
        while old_count != end - begin:
            split = _split(end - begin)
            middle = begin + split
            if old_count <= split:
                proof.append(self._range_root(middle, end))
                end = middle
            else:
                proof.append(self._range_root(begin, middle))
                old_count -= split
                begin = middle
                old_is_root = False
        if not old_is_root:
            proof.append(self._range_root(begin, end))
        proof.reverse()
        return proof

    def _range_root(self, begin: int, end: int) -> bytes:
        """MTH(D[begin:end]) from cached complete subtrees, in O(log n).

        Requires begin < end <= size and ``begin`` a multiple of the smallest power of two
        >= end - begin, which holds for every range the RFC recursion visits. Such a range is
        complete subtrees of strictly decreasing height, and its MTH folds them from the right.
        """
        assert 0 <= begin < end <= self._size
        roots: list[bytes] = []
        start = begin
        while start < end:
            height = (end - start).bit_length() - 1
            assert start % (1 << height) == 0, (begin, end)
            roots.append(self._complete_root(height, start >> height))
            start += 1 << height
        root = roots.pop()
        while roots:
            root = _node(roots.pop(), root)
        return root

    def _complete_root(self, height: int, position: int) -> bytes:
        """Root of the complete subtree of 2**height leaves starting at leaf position << height."""
        offset = position * HASH_BYTES
        level = self._levels[height]
        assert offset + HASH_BYTES <= len(level)
        return bytes(level[offset : offset + HASH_BYTES])


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.3.2, step for step. Requires 1 <= size <= MAX_TREE_LEAVES, 0 <= index < size,
    32-byte hashes and at most MAX_PROOF_HASHES proof elements (else ValidationError). A proof
    that does not lead to ``root`` raises RejectError(CHECKPOINT_MISMATCH) naming the failed check.
    Note that ``size`` is bound only through ``root``: take both from one signed checkpoint.
    """
    _check_hash("root", root)
    computed, facts = _inclusion_root(leaf_hash, index, size, proof)
    _require_equal("inclusion", "root_mismatch", facts, expected=root, actual=computed)


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf ``index`` of a tree of ``size`` leaves (RFC 9162 §2.1.3.2 steps
    1-5, without the final comparison): for a tree whose root is never written down but signed, as a v2 batch's
    (the signature check is the comparison). Same requirements and errors as ``verify_inclusion``; a path of the
    wrong length raises RejectError(CHECKPOINT_MISMATCH)."""
    return _inclusion_root(leaf_hash, index, size, proof)[0]


def _inclusion_root(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> tuple[bytes, dict[str, Any]]:
    _check_hash("leaf_hash", leaf_hash)
    _check_count("size", size, 1, MAX_TREE_LEAVES)
    _check_count("index", index, 0, size - 1)
    _check_proof(proof)
    facts: dict[str, Any] = {
        "index": index,
        "size": size,
        "proof_length": len(proof),
        "leaf_hash": leaf_hash.hex(),
    }
    # Steps 2-4: fn = index, sn = size - 1, r = leaf hash; fold the path in.
    _, computed, remaining, used = _fold_path(index, size - 1, leaf_hash, proof, with_old=False)
    # Step 5.
    _require_whole_path("inclusion", len(proof) - used, remaining, facts)
    return computed, facts


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` leaves with ``old_root`` is a prefix of ``new_root``'s.

    RFC 9162 §2.1.4.2, step for step, for 0 < old_size < new_size; when the sizes are equal the
    proof must be empty and the roots equal. Requires 1 <= old_size <= new_size <= MAX_TREE_LEAVES,
    32-byte hashes and at most MAX_PROOF_HASHES proof elements (else ValidationError). A failed
    check raises RejectError(CHECKPOINT_MISMATCH) naming it.
    """
    _check_count("new_size", new_size, 1, MAX_TREE_LEAVES)
    _check_count("old_size", old_size, 1, new_size)
    _check_hash("old_root", old_root)
    _check_hash("new_root", new_root)
    _check_proof(proof)
    kind = "consistency"
    facts: dict[str, Any] = {
        "old_size": old_size,
        "new_size": new_size,
        "proof_length": len(proof),
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
    }
    if old_size == new_size:
        if proof:
            raise _mismatch(kind, "proof_not_empty", "equal sizes need none", facts)
        _require_equal(kind, "root_mismatch", facts, expected=old_root, actual=new_root)
        return
    # Step 1: a proper prefix always needs at least one hash.
    if not proof:
        raise _mismatch(kind, "proof_empty", "a proper prefix needs hashes", facts)
    # Step 2: when old_size is a power of two the old root is itself a node of the new tree,
    # so the proof leaves it out and the verifier puts it back.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Steps 3-4: skip the levels where the old tree's last node is a right child.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Steps 5-6: both roots start from the first element and absorb the rest.
    old_computed, new_computed, remaining, used = _fold_path(
        fn, sn, path[0], path[1:], with_old=True
    )
    # Step 7.
    _require_whole_path(kind, len(path) - 1 - used, remaining, facts)
    _require_equal(kind, "old_root_mismatch", facts, expected=old_root, actual=old_computed)
    _require_equal(kind, "new_root_mismatch", facts, expected=new_root, actual=new_computed)


def _fold_path(
    fn: int, sn: int, seed: bytes, path: Sequence[bytes], *, with_old: bool
) -> tuple[bytes, bytes, int, int]:
    """The bit-shifting loop shared by RFC 9162 §2.1.3.2 step 4 and §2.1.4.2 step 6.

    ``fn`` is the index of the node we hold, ``sn`` the index of the last node at that level.
    Returns (old root, new root, final sn, elements used). ``with_old`` also tracks the old root
    (consistency); for inclusion the single running hash r is the "new" one. Stops early, with
    used < len(path), when sn reaches 0 while elements remain (the RFC's step "fail").
    """
    old = new = seed
    for used, element in enumerate(path):
        if sn == 0:
            return old, new, sn, used
        if fn & 1 or fn == sn:
            # We hold a right child, or the last node of its level (no right sibling): the
            # element is our left sibling. Skip the levels where we stay the last node.
            if with_old:
                old = _node(element, old)
            new = _node(element, new)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            new = _node(new, element)
        fn >>= 1
        sn >>= 1
    return old, new, sn, len(path)


def _require_whole_path(kind: str, unused: int, remaining: int, facts: dict[str, Any]) -> None:
    """Fail when sn reached 0 with elements left over, or elements ran out before sn reached 0."""
    if unused > 0:
        raise _mismatch(kind, "proof_too_long", f"{unused} hashes beyond the root", facts)
    if remaining != 0:
        raise _mismatch(kind, "proof_too_short", "fewer hashes than levels", facts)


def _require_equal(
    kind: str, check: str, facts: dict[str, Any], *, expected: bytes, actual: bytes
) -> None:
    if actual != expected:
        detail = f"got {actual.hex()}, want {expected.hex()}"
        raise _mismatch(kind, check, detail, facts, expected=expected.hex(), actual=actual.hex())


def _mismatch(
    kind: str, check: str, detail: str, facts: dict[str, Any], **more: Any
) -> RejectError:
    return RejectError(
        RejectCode.CHECKPOINT_MISMATCH,
        f"{kind} proof fails {check}: {detail}",
        proof_kind=kind,
        check=check,
        **facts,
        **more,
    )


def _split(count: int) -> int:
    """k, the largest power of two smaller than count. Requires count >= 2."""
    assert count >= 2
    return 1 << ((count - 1).bit_length() - 1)


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _node_pair(pair: bytes | bytearray | memoryview) -> bytes:
    """Node hash of 64 contiguous bytes holding left || right (no slicing apart, no copies)."""
    return hashlib.sha256(_NODE_PREFIX + pair).digest()


def _check_hash(field: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise ValidationError(field, value, f"must be bytes, got {type(value).__name__}")
    if len(value) != HASH_BYTES:
        reason = f"must be {HASH_BYTES} bytes, got {len(value)}"
        raise ValidationError(field, value, reason, expected=HASH_BYTES, actual=len(value))


def _check_count(field: str, value: object, low: int, high: int) -> None:
    # bool is an int in Python; True as an index is a bug at the caller, not leaf 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field, value, f"must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        reason = f"must be in [{low}, {high}]" if low <= high else "the tree is empty"
        raise ValidationError(field, value, reason, low=low, high=high)


def _check_proof(proof: object) -> None:
    if not isinstance(proof, (list, tuple)):
        reason = f"must be a list of hashes, got {type(proof).__name__}"
        raise ValidationError("proof", proof, reason)
    if len(proof) > MAX_PROOF_HASHES:
        reason = f"longer than {MAX_PROOF_HASHES} hashes"
        raise ValidationError("proof", len(proof), reason, actual=len(proof))
    for position, element in enumerate(proof):
        _check_hash(f"proof[{position}]", element)


class CompactTree:
    """An append-only RFC 9162 tree that keeps only its frontier: the roots of the complete subtrees its size is made
    of (one per set bit of the size, largest first), so O(log n) hashes whatever its size. It can append, give its
    current root and say which complete subtrees each append finished — what a notary needs while it runs; proofs
    of past states come from those subtrees stored on disk (``IndexedTree``)."""

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._frontier: list[tuple[int, bytes]] = []  # (height, root), heights strictly decreasing
        self._size = 0

    @classmethod
    def from_frontier(cls, size: int, roots: dict[tuple[int, int], bytes]) -> CompactTree:
        """The tree of ``size`` leaves from the roots of its frontier subtrees ``{(height, position): hash}``
        (``frontier(size)`` says which). Requires every one of them."""
        _check_count("size", size, 0, MAX_TREE_LEAVES)
        tree = cls()
        for height, position in frontier(size):
            root = roots.get((height, position))
            if root is None:
                raise ValidationError("subtree", f"{height}/{position}", "is missing from the frontier",
                                      height=height, position=position)
            _check_hash(f"roots[{height}/{position}]", root)
            tree._frontier.append((height, root))
        tree._size = size
        return tree

    @property
    def size(self) -> int:
        """How many leaves the tree holds."""
        return self._size

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash (its index is the size before); return the complete subtrees of height >= 1 it
        finished, ``(height, position, root)``, lowest first. Requires a 32-byte hash."""
        _check_hash("leaf_hash", leaf_hash)
        frontier = self._frontier
        node, height = leaf_hash, 0
        done: list[tuple[int, int, bytes]] = []
        size = self._size + 1
        while frontier and frontier[-1][0] == height:
            node = _node(frontier.pop()[1], node)
            height += 1
            done.append((height, (size >> height) - 1, node))
        frontier.append((height, node))
        self._size = size
        return done

    def root(self) -> bytes:
        """MTH of all the leaves: the frontier folded from the right."""
        if not self._frontier:
            return EMPTY_ROOT
        root = self._frontier[-1][1]
        for _, left in reversed(self._frontier[:-1]):
            root = _node(left, root)
        return root


def frontier(size: int) -> list[tuple[int, int]]:
    """The complete subtrees ``(height, position)`` a tree of ``size`` leaves is made of, largest first: one per set
    bit of ``size`` (what ``CompactTree`` keeps, and what ``root(size)`` reads)."""
    out = []
    start = 0
    for height in range(size.bit_length() - 1, -1, -1):
        if size >> height & 1:
            out.append((height, start >> height))
            start += 1 << height
    return out


class IndexedTree(MerkleTree):
    """A tree of ``size`` leaves known only by some of its complete-subtree roots, ``{(height, position): hash}``
    (as a notary's on-disk index stores them). ``root``, ``inclusion_proof`` and ``consistency_proof`` work
    when every subtree they visit is given; ``needed`` says which those are. Appending is not supported."""

    __slots__ = ("_roots",)

    def __init__(self, size: int, roots: dict[tuple[int, int], bytes]) -> None:
        super().__init__()
        _check_count("size", size, 0, MAX_TREE_LEAVES)
        self._size = size
        self._roots = roots

    def append(self, leaf_hash: bytes) -> int:
        raise ValidationError("tree", "indexed", "an indexed tree is read-only")

    def truncate(self, size: int) -> None:
        raise ValidationError("tree", "indexed", "an indexed tree is read-only")

    def _complete_root(self, height: int, position: int) -> bytes:
        found = self._roots.get((height, position))
        if found is None:
            raise ValidationError("subtree", f"{height}/{position}", "is not in the index",
                                  height=height, position=position)
        return found

    @staticmethod
    def needed(size: int, *, inclusion: int | None = None, old_size: int | None = None) -> set[tuple[int, int]]:
        """The complete subtrees (height, position) that ``root(size)``, ``inclusion_proof(inclusion, size)``
        and (if given) ``consistency_proof(old_size, size)`` read, each O(log size) of them."""
        seen: set[tuple[int, int]] = set()

        class _Recorder(MerkleTree):
            __slots__ = ()

            def _complete_root(self, height: int, position: int) -> bytes:
                seen.add((height, position))
                return bytes(HASH_BYTES)

        rec = _Recorder()
        rec._size = size
        rec.root(size)
        if inclusion is not None:
            rec.inclusion_proof(inclusion, size)
        if old_size is not None:
            rec.root(old_size)
            rec.consistency_proof(old_size, size)
        return seen


def fold_complete(hashes: Sequence[bytes]) -> bytes:
    """Root of a complete subtree from its ``2**k`` nodes of one level, left to right. Requires k >= 0."""
    level = list(hashes)
    if len(level) & (len(level) - 1) or not level:
        raise ValidationError("hashes", len(level), "must be a power of two of nodes")
    while len(level) > 1:
        level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]
