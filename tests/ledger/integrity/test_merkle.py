"""Tests for ledger/integrity/merkle.py: RFC 9162 roots, proofs and their verification.

How:

1. Exhaustive: every inclusion proof of every tree size 1..300 verifies, and so does every
   consistency proof for 1 <= old <= new <= 300.
2. Oracle: roots and proofs equal those of ledger/testing/merkle_ref.py, a naive transcription
   of the RFC, for every size up to 64 (all indices, all pairs) and spot sizes above.
3. Negative space: for many (index, size) and (old, new) cases, every single mutation of a valid
   proof (one bit of any element, of the leaf, of a root; index or size off by one; an element
   added, prepended or dropped; an empty proof; wrong roots) is refused with evidence.
4. Golden vectors: tests/vectors/merkle/*.json (written by scripts/gen_merkle_vectors.py from
   the oracle) all hold, and their contents fold into one pinned SHA-256.
5. State: appending one by one, bulk building and truncating agree at every size.
6. Bad arguments raise ValidationError naming the field.
7. Hypothesis: random sizes up to 4096, random data, random append/truncate sequences.

All trees use leaf i = b"leaf-%d" % i, the same rule as the golden vectors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, RejectCode, RejectError, ValidationError
from ledger.integrity.merkle import (
    EMPTY_ROOT,
    MAX_PROOF_HASHES,
    MAX_TREE_LEAVES,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

# The oracle ships in ledger.testing so that scripts/gen_merkle_vectors.py imports it the same way.
from ledger.testing import merkle_ref as ref

REPOSITORY = Path(__file__).resolve().parents[3]

SIZE_EXHAUSTIVE_MAX = 300  # every index and every pair up to here
SIZE_ORACLE_MAX = 64  # every index and every pair compared with the naive reference up to here
SIZE_MUTATION_MAX = 100  # every index and every pair mutated up to here
SIZES_SPOT = (100, 255, 256, 257, 300, 1023, 1024, 1025)
LEAF_COUNT = 4096  # one shared tree; any size up to this is answered from it

LEAF_INPUTS = [b"leaf-%d" % i for i in range(LEAF_COUNT)]
LEAF_HASHES = [leaf_hash(data) for data in LEAF_INPUTS]
TREE = MerkleTree.from_leaf_hashes(LEAF_HASHES)
ROOTS = [TREE.root(size) for size in range(LEAF_COUNT + 1)]

VECTORS_DIRECTORY = REPOSITORY / "tests" / "vectors" / "merkle"
# SHA-256 over the canonical JSON of both vector files (printed by gen_merkle_vectors.py).
# Changing a vector, a field name or the format string changes it: regenerate on purpose only.
VECTORS_SHA256 = "3925db7c787ca777bdf80e40ada8021e01a20252dbde64d79b4392eb8ee5f820"

OTHER_HASH = hashlib.sha256(b"not a node of any tree here").digest()


def flip(value: bytes, bit: int) -> bytes:
    """``value`` with one bit inverted (bit 0 is the low bit of the first byte)."""
    bit %= 8 * len(value)
    changed = bytearray(value)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --- 1. exhaustive ----------------------------------------------------------------------------


def test_every_inclusion_proof_verifies_for_every_size_up_to_300() -> None:
    for size in range(1, SIZE_EXHAUSTIVE_MAX + 1):
        for index in range(size):
            proof = TREE.inclusion_proof(index, size)
            assert len(proof) <= (size - 1).bit_length()
            verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])


def test_every_consistency_proof_verifies_for_every_pair_up_to_300() -> None:
    for new_size in range(1, SIZE_EXHAUSTIVE_MAX + 1):
        for old_size in range(1, new_size + 1):
            proof = TREE.consistency_proof(old_size, new_size)
            assert len(proof) <= (new_size - 1).bit_length() + 1
            assert (proof == []) == (old_size == new_size)
            verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)


# --- 2. oracle --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, SIZE_ORACLE_MAX + 1))
def test_roots_and_proofs_equal_the_naive_reference(size: int) -> None:
    entries = LEAF_INPUTS[:size]
    assert TREE.root(size) == ref.mth(entries)
    for index in range(size):
        assert TREE.inclusion_proof(index, size) == ref.path(index, entries), index
    for old_size in range(1, size + 1):
        assert TREE.consistency_proof(old_size, size) == ref.proof(old_size, entries), old_size


@pytest.mark.parametrize("size", SIZES_SPOT)
def test_spot_sizes_equal_the_naive_reference(size: int) -> None:
    entries = LEAF_INPUTS[:size]
    assert TREE.root(size) == ref.mth(entries)
    for index in ref.spot_indices(size):
        assert TREE.inclusion_proof(index, size) == ref.path(index, entries), index
    for old_size in [*ref.spot_indices(size)[1:], size]:
        assert TREE.consistency_proof(old_size, size) == ref.proof(old_size, entries), old_size


def test_empty_and_one_leaf_roots_are_the_rfc_known_answers() -> None:
    # echo -n | sha256sum
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    # printf '\x00' | sha256sum: a tree of one empty leaf; differs from the empty tree.
    one_leaf = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert root_from_leaf_hashes([leaf_hash(b"")]).hex() == one_leaf
    assert leaf_hash(b"") != EMPTY_ROOT


def test_node_hash_is_the_reference_rule_and_order_matters() -> None:
    left, right = LEAF_HASHES[0], LEAF_HASHES[1]
    assert node_hash(left, right) == ref.hash_children(left, right)
    assert node_hash(left, right) != node_hash(right, left)
    # Domain separation: a node is never the leaf hash of its children's bytes.
    assert node_hash(left, right) != leaf_hash(left + right)


# --- 3. negative space ------------------------------------------------------------------------

# (description, all arguments of the verify call, checks allowed to refuse it)
Mutation = tuple[str, dict[str, Any], set[str]]


def edited_proofs(proof: list[bytes], salt: int) -> Iterator[tuple[str, list[bytes], bool]]:
    """Each element with one bit flipped (True), and each element dropped (False)."""
    for position in range(len(proof)):
        changed = list(proof)
        changed[position] = flip(changed[position], salt + 29 * position)
        yield f"proof[{position}] bit", changed, True
        yield f"proof[{position}] dropped", proof[:position] + proof[position + 1 :], False


def inclusion_mutations(index: int, size: int) -> Iterator[Mutation]:
    """Every single mutation of the valid inclusion proof of leaf ``index`` in ``size``.

    Changing the size also takes that size's true root: with the old root, a proof can honestly
    fit a different tree shape (see test_size_is_bound_to_the_root_not_to_the_proof).
    """
    proof = TREE.inclusion_proof(index, size)
    valid = {
        "leaf_hash": LEAF_HASHES[index],
        "index": index,
        "size": size,
        "proof": proof,
        "root": ROOTS[size],
    }
    salt = index * 7 + size * 13
    any_check = {"root_mismatch", "proof_too_long", "proof_too_short"}
    changes: list[tuple[str, dict[str, Any], set[str]]] = [
        ("leaf bit", {"leaf_hash": flip(LEAF_HASHES[index], salt)}, {"root_mismatch"}),
        ("root bit", {"root": flip(ROOTS[size], salt + 1)}, {"root_mismatch"}),
        ("root of size + 1", {"root": ROOTS[size + 1]}, {"root_mismatch"}),
        ("empty tree root", {"root": EMPTY_ROOT}, {"root_mismatch"}),
        ("root appended", {"proof": [*proof, ROOTS[size]]}, {"proof_too_long"}),
        ("hash appended", {"proof": [*proof, OTHER_HASH]}, {"proof_too_long"}),
        ("hash prepended", {"proof": [OTHER_HASH, *proof]}, {"proof_too_long"}),
        ("leaf prepended", {"proof": [LEAF_HASHES[index], *proof]}, {"proof_too_long"}),
        ("index - 1", {"index": index - 1}, any_check),
        ("index + 1", {"index": index + 1}, any_check),
        ("size - 1", {"size": size - 1, "root": ROOTS[size - 1]}, any_check),
        ("size + 1", {"size": size + 1, "root": ROOTS[size + 1]}, any_check),
    ]
    if proof:
        changes.append(("empty proof", {"proof": []}, {"proof_too_short"}))
    for name, changed, flipped in edited_proofs(proof, salt):
        checks = {"root_mismatch"} if flipped else {"proof_too_short"}
        changes.append((name, {"proof": changed}, checks))
    for name, change, checks in changes:
        yield f"leaf {index} of {size}, {name}", {**valid, **change}, checks


def consistency_mutations(old_size: int, new_size: int) -> Iterator[Mutation]:
    """As inclusion_mutations, for the consistency proof old_size -> new_size (old < new)."""
    proof = TREE.consistency_proof(old_size, new_size)
    old_root, new_root = ROOTS[old_size], ROOTS[new_size]
    valid = {
        "old_size": old_size,
        "new_size": new_size,
        "old_root": old_root,
        "new_root": new_root,
        "proof": proof,
    }
    salt = old_size * 11 + new_size * 5
    mismatch = {"old_root_mismatch", "new_root_mismatch"}
    any_check = mismatch | {"proof_too_long", "proof_too_short", "proof_not_empty"}
    changes: list[tuple[str, dict[str, Any], set[str]]] = [
        ("old root bit", {"old_root": flip(old_root, salt)}, mismatch),
        ("new root bit", {"new_root": flip(new_root, salt + 3)}, mismatch),
        ("roots swapped", {"old_root": new_root, "new_root": old_root}, mismatch),
        ("old root of old + 1", {"old_root": ROOTS[old_size + 1]}, mismatch),
        ("new root of new + 1", {"new_root": ROOTS[new_size + 1]}, mismatch),
        ("empty proof", {"proof": []}, {"proof_empty"}),
        ("old root appended", {"proof": [*proof, old_root]}, {"proof_too_long"}),
        ("new root appended", {"proof": [*proof, new_root]}, {"proof_too_long"}),
        ("hash prepended", {"proof": [OTHER_HASH, *proof]}, {"proof_too_long"}),
        ("first element repeated", {"proof": proof[:1] + proof}, {"proof_too_long"}),
        ("old - 1", {"old_size": old_size - 1, "old_root": ROOTS[old_size - 1]}, any_check),
        ("old + 1", {"old_size": old_size + 1, "old_root": ROOTS[old_size + 1]}, any_check),
        ("new - 1", {"new_size": new_size - 1, "new_root": ROOTS[new_size - 1]}, any_check),
        ("new + 1", {"new_size": new_size + 1, "new_root": ROOTS[new_size + 1]}, any_check),
    ]
    for name, changed, flipped in edited_proofs(proof, salt):
        checks = mismatch if flipped else {"proof_too_short", "proof_empty"}
        changes.append((name, {"proof": changed}, checks))
    for name, change, checks in changes:
        yield f"{old_size} -> {new_size}, {name}", {**valid, **change}, checks


def unrefused(
    verify: Callable[..., None], mutations: Iterable[Mutation], fields: set[str]
) -> list[str]:
    """The mutations that ``verify`` accepts, or refuses wrongly; [] when all is well.

    A refusal is right when it is a RejectError(CHECKPOINT_MISMATCH) naming one of the allowed
    checks with its evidence, or, for a size or index pushed out of range, a ValidationError
    naming one of ``fields``.
    """
    failures = []
    for description, arguments, checks in mutations:
        try:
            verify(**arguments)
        except RejectError as error:
            evidence = error.evidence
            if error.code is not RejectCode.CHECKPOINT_MISMATCH:
                failures.append(f"{description}: code {error.code}")
            elif evidence.get("check") not in checks:
                failures.append(f"{description}: check {evidence.get('check')}, want {checks}")
            elif not {"proof_kind", "proof_length"} <= evidence.keys():
                failures.append(f"{description}: evidence {evidence}")
            elif "mismatch" in evidence["check"] and not {"expected", "actual"} <= evidence.keys():
                failures.append(f"{description}: a mismatch without expected/actual")
        except ValidationError as error:
            if error.field not in fields or "value" not in error.evidence:
                failures.append(f"{description}: field {error.field}")
        else:
            failures.append(f"{description}: verified")
    return failures


@pytest.mark.parametrize(
    "sizes",
    [range(1, SIZE_MUTATION_MAX + 1), (255, 256, 257, 300, 1024)],
    ids=["every-index-to-100", "spot"],
)
def test_every_inclusion_mutation_is_refused(sizes: Iterable[int]) -> None:
    cases = [
        (index, size)
        for size in sizes
        for index in (range(size) if size <= SIZE_MUTATION_MAX else ref.spot_indices(size))
    ]
    mutations = (mutation for case in cases for mutation in inclusion_mutations(*case))
    failures = unrefused(verify_inclusion, mutations, {"index", "size"})
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize(
    "sizes",
    [range(2, SIZE_MUTATION_MAX + 1), (255, 256, 257, 300, 1024)],
    ids=["every-pair-to-100", "spot"],
)
def test_every_consistency_mutation_is_refused(sizes: Iterable[int]) -> None:
    cases = [
        (old_size, new_size)
        for new_size in sizes
        for old_size in (
            range(1, new_size) if new_size <= SIZE_MUTATION_MAX else ref.spot_indices(new_size)[1:]
        )
    ]
    mutations = (mutation for case in cases for mutation in consistency_mutations(*case))
    failures = unrefused(verify_consistency, mutations, {"old_size", "new_size"})
    assert not failures, "\n".join(failures[:20])


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    for size in (1, 2, 7, 64):
        verify_consistency(size, size, ROOTS[size], ROOTS[size], [])
        with pytest.raises(RejectError) as caught:
            verify_consistency(size, size, ROOTS[size], ROOTS[size], [ROOTS[size]])
        assert caught.value.evidence["check"] == "proof_not_empty"
        with pytest.raises(RejectError) as caught:
            verify_consistency(size, size, ROOTS[size], ROOTS[size + 1], [])
        assert caught.value.evidence["check"] == "root_mismatch"


def test_a_mismatch_carries_hex_evidence() -> None:
    proof = TREE.inclusion_proof(3, 7)
    with pytest.raises(RejectError) as caught:
        verify_inclusion(LEAF_HASHES[3], 3, 7, proof, ROOTS[8])
    error = caught.value
    assert error.evidence["expected"] == ROOTS[8].hex()
    assert error.evidence["actual"] == ROOTS[7].hex()
    assert error.evidence["leaf_hash"] == LEAF_HASHES[3].hex()
    assert (error.evidence["index"], error.evidence["size"]) == (3, 7)
    assert error.to_dict()["code"] == "checkpoint_mismatch"
    assert "root_mismatch" in str(error)


def test_size_is_bound_to_the_root_not_to_the_proof() -> None:
    # Leaf 0's path in a 3-leaf tree, [leaf 1, leaf 2], has the shape of its path in a 4-leaf
    # tree whose right subtree hashes to leaf 2. Against the 3-leaf root it verifies for size 4
    # too: nothing in the proof pins the size. So a verifier must take size and root from one
    # signed checkpoint, never one from the proof and the other from elsewhere.
    proof = TREE.inclusion_proof(0, 3)
    verify_inclusion(LEAF_HASHES[0], 0, 4, proof, ROOTS[3])
    with pytest.raises(RejectError):
        verify_inclusion(LEAF_HASHES[0], 0, 4, proof, ROOTS[4])


# --- 4. golden vectors ------------------------------------------------------------------------


def load_vectors() -> tuple[dict[str, Any], dict[str, Any]]:
    inclusion = json.loads((VECTORS_DIRECTORY / "inclusion.json").read_text(encoding="utf-8"))
    consistency = json.loads((VECTORS_DIRECTORY / "consistency.json").read_text(encoding="utf-8"))
    return inclusion, consistency


def vector_trees(inclusion: dict[str, Any]) -> dict[str, MerkleTree]:
    """The two trees the vectors speak of: generated leaves, and the RFC 6962 test tree."""
    roots = [answer for answer in inclusion["known_answers"] if answer["kind"] == "root"]
    rfc6962_inputs = max((answer["leaf_inputs"] for answer in roots), key=len)
    rfc6962 = [leaf_hash(bytes.fromhex(data)) for data in rfc6962_inputs]
    return {"generated": TREE, "rfc6962": MerkleTree.from_leaf_hashes(rfc6962)}


def test_golden_vectors_fold_into_the_pinned_digest() -> None:
    inclusion, consistency = load_vectors()
    canonical = json.dumps(
        {"consistency": consistency, "inclusion": inclusion}, sort_keys=True, separators=(",", ":")
    )
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == VECTORS_SHA256
    assert inclusion["format"] == consistency["format"] == "tokenledger-merkle-vectors/1"


def test_golden_known_answers_hold() -> None:
    inclusion, _ = load_vectors()
    kinds = set()
    for answer in inclusion["known_answers"]:
        kinds.add(answer["kind"])
        if answer["kind"] == "root":
            hashes = [leaf_hash(bytes.fromhex(data)) for data in answer["leaf_inputs"]]
            assert root_from_leaf_hashes(hashes).hex() == answer["root"], answer["desc"]
        elif answer["kind"] == "leaf_hash":
            assert leaf_hash(bytes.fromhex(answer["input"])).hex() == answer["hash"]
        else:
            # The published node answer hashes short strings, which node_hash refuses (it takes
            # only 32-byte hashes); the rule itself is checked through every root above.
            left, right = bytes.fromhex(answer["left"]), bytes.fromhex(answer["right"])
            assert ref.hash_children(left, right).hex() == answer["hash"]
    assert kinds == {"root", "leaf_hash", "node_hash"}


def test_golden_inclusion_vectors_match_and_verify() -> None:
    inclusion, _ = load_vectors()
    trees = vector_trees(inclusion)
    for vector in inclusion["vectors"]:
        tree, index, size = trees[vector["tree"]], vector["leaf_index"], vector["tree_size"]
        proof = [bytes.fromhex(element) for element in vector["proof"]]
        assert tree.leaf_hash_at(index).hex() == vector["leaf_hash"], vector["desc"]
        assert tree.root(size).hex() == vector["root"], vector["desc"]
        assert tree.inclusion_proof(index, size) == proof, vector["desc"]
        leaf, root = bytes.fromhex(vector["leaf_hash"]), bytes.fromhex(vector["root"])
        verify_inclusion(leaf, index, size, proof, root)
    assert len(inclusion["vectors"]) > 500


def test_golden_consistency_vectors_match_and_verify() -> None:
    inclusion, consistency = load_vectors()
    trees = vector_trees(inclusion)
    for vector in consistency["vectors"]:
        tree, old_size, new_size = trees[vector["tree"]], vector["old_size"], vector["new_size"]
        proof = [bytes.fromhex(element) for element in vector["proof"]]
        old_root, new_root = bytes.fromhex(vector["old_root"]), bytes.fromhex(vector["new_root"])
        assert (tree.root(old_size), tree.root(new_size)) == (old_root, new_root), vector["desc"]
        assert tree.consistency_proof(old_size, new_size) == proof, vector["desc"]
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    assert len(consistency["vectors"]) > 500


# --- 5. state ---------------------------------------------------------------------------------


def test_appending_one_by_one_gives_the_bulk_root_at_every_size() -> None:
    tree = MerkleTree()
    for size, leaf in enumerate(LEAF_HASHES[:1100], start=1):
        assert tree.append(leaf) == size - 1
        assert tree.size == size
        assert tree.root() == ROOTS[size]
        if size <= SIZE_EXHAUSTIVE_MAX:
            assert tree.root() == root_from_leaf_hashes(LEAF_HASHES[:size])
    # Every past size is still answerable, and proofs agree with the bulk-built tree.
    for size in range(tree.size + 1):
        assert tree.root(size) == ROOTS[size]
    for size in (1, 2, 3, 513, 1024, 1100):
        for index in ref.spot_indices(size):
            assert tree.inclusion_proof(index, size) == TREE.inclusion_proof(index, size)
            assert tree.leaf_hash_at(index) == LEAF_HASHES[index]
        for old_size in ref.spot_indices(size)[1:]:
            assert tree.consistency_proof(old_size, size) == TREE.consistency_proof(old_size, size)


def test_truncate_then_append_other_leaves_leaves_no_stale_node() -> None:
    others = [leaf_hash(b"other-%d" % i) for i in range(200)]
    for keep in (0, 1, 2, 63, 64, 65, 100, 128, 199):
        tree = MerkleTree.from_leaf_hashes(LEAF_HASHES[:200])
        tree.truncate(keep)
        assert tree.size == keep
        assert tree.root() == ROOTS[keep]
        with pytest.raises(ValidationError):
            tree.root(keep + 1)
        for leaf in others[: 200 - keep]:
            tree.append(leaf)
        expected = MerkleTree.from_leaf_hashes(LEAF_HASHES[:keep] + others[: 200 - keep])
        assert tree.root() == expected.root()
        for size in (1, keep + 1, 150, 200):
            for index in ref.spot_indices(size):
                assert tree.inclusion_proof(index, size) == expected.inclusion_proof(index, size)
            assert tree.consistency_proof(1, size) == expected.consistency_proof(1, size)


def test_a_refused_append_changes_nothing() -> None:
    tree = MerkleTree.from_leaf_hashes(LEAF_HASHES[:5])
    with pytest.raises(ValidationError):
        tree.append(b"\x00" * 31)
    assert tree.size == 5
    assert tree.root() == ROOTS[5]


# --- 6. bad arguments -------------------------------------------------------------------------

H = LEAF_HASHES[0]
SHORT = H[:31]
LONG_PROOF = [H] * (MAX_PROOF_HASHES + 1)
# Wrong types, typed Any so that the table below says what a caller could really pass.
TEXT: Any = H.hex()
BYTEARRAY: Any = bytearray(H)
FLOAT: Any = 1.0
NOTHING: Any = None
BARE_HASH: Any = H

BAD_ARGUMENTS: list[tuple[str, Callable[[], object], str]] = [
    ("leaf data not bytes", lambda: leaf_hash(TEXT), "data"),
    ("left 31 bytes", lambda: node_hash(SHORT, H), "left"),
    ("right bytearray", lambda: node_hash(H, BYTEARRAY), "right"),
    ("append 31 bytes", lambda: MerkleTree().append(SHORT), "leaf_hash"),
    ("append 33 bytes", lambda: MerkleTree().append(H + b"\x00"), "leaf_hash"),
    ("bulk with a bad hash", lambda: MerkleTree.from_leaf_hashes([H, SHORT]), "hashes[1]"),
    ("root of a future size", lambda: TREE.root(LEAF_COUNT + 1), "size"),
    ("root of size -1", lambda: TREE.root(-1), "size"),
    ("leaf of the empty tree", lambda: MerkleTree().leaf_hash_at(0), "index"),
    ("truncate beyond size", lambda: MerkleTree().truncate(1), "size"),
    ("inclusion in size 0", lambda: TREE.inclusion_proof(0, 0), "size"),
    ("inclusion index = size", lambda: TREE.inclusion_proof(5, 5), "index"),
    ("inclusion index -1", lambda: TREE.inclusion_proof(-1, 5), "index"),
    ("inclusion index True", lambda: TREE.inclusion_proof(True, 5), "index"),
    ("inclusion future size", lambda: TREE.inclusion_proof(0, LEAF_COUNT + 1), "size"),
    ("consistency from 0", lambda: TREE.consistency_proof(0, 5), "old_size"),
    ("consistency backwards", lambda: TREE.consistency_proof(6, 5), "old_size"),
    ("consistency future", lambda: TREE.consistency_proof(1, LEAF_COUNT + 1), "new_size"),
    ("verify leaf 31 bytes", lambda: verify_inclusion(SHORT, 0, 1, [], H), "leaf_hash"),
    ("verify leaf str", lambda: verify_inclusion(TEXT, 0, 1, [], H), "leaf_hash"),
    ("verify size 0", lambda: verify_inclusion(H, 0, 0, [], H), "size"),
    ("verify size too big", lambda: verify_inclusion(H, 0, MAX_TREE_LEAVES + 1, [], H), "size"),
    ("verify index = size", lambda: verify_inclusion(H, 3, 3, [H, H], H), "index"),
    ("verify index float", lambda: verify_inclusion(H, FLOAT, 3, [H, H], H), "index"),
    ("verify proof bytes", lambda: verify_inclusion(H, 0, 2, BARE_HASH, H), "proof"),
    ("verify proof element", lambda: verify_inclusion(H, 0, 3, [H, SHORT], H), "proof[1]"),
    ("verify proof too long", lambda: verify_inclusion(H, 0, 3, LONG_PROOF, H), "proof"),
    ("verify root 31 bytes", lambda: verify_inclusion(H, 0, 1, [], SHORT), "root"),
    ("verify old 0", lambda: verify_consistency(0, 5, H, H, []), "old_size"),
    ("verify old > new", lambda: verify_consistency(6, 5, H, H, [H]), "old_size"),
    ("verify new 0", lambda: verify_consistency(1, 0, H, H, []), "new_size"),
    ("verify old root", lambda: verify_consistency(1, 2, SHORT, H, [H]), "old_root"),
    ("verify new root", lambda: verify_consistency(1, 2, H, NOTHING, [H]), "new_root"),
    ("verify consistency element", lambda: verify_consistency(1, 2, H, H, [SHORT]), "proof[0]"),
    ("verify consistency too long", lambda: verify_consistency(1, 2, H, H, LONG_PROOF), "proof"),
]


@pytest.mark.parametrize(
    ("call", "field"),
    [(call, field) for _, call, field in BAD_ARGUMENTS],
    ids=[name for name, _, _ in BAD_ARGUMENTS],
)
def test_bad_arguments_raise_validation_error_naming_the_field(
    call: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        call()
    error = caught.value
    assert error.field == field
    assert error.evidence["field"] == field
    assert error.code is RejectCode.INVALID_FIELD
    assert f"invalid {field}=" in str(error)
    assert isinstance(error, LedgerError)


# --- 7. properties ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(1, LEAF_COUNT), st.data())
def test_random_inclusion_proofs_verify_and_any_bit_flip_is_refused(size: int, data: Any) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = TREE.inclusion_proof(index, size)
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size])
    # One bit anywhere in (leaf hash, proof, root), taken as one string of hashes.
    hashes = [LEAF_HASHES[index], *proof, ROOTS[size]]
    bit = data.draw(st.integers(0, 256 * len(hashes) - 1))
    hashes[bit // 256] = flip(hashes[bit // 256], bit % 256)
    with pytest.raises(RejectError):
        verify_inclusion(hashes[0], index, size, hashes[1:-1], hashes[-1])


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(2, LEAF_COUNT), st.data())
def test_random_consistency_proofs_verify_and_any_bit_flip_is_refused(
    new_size: int, data: Any
) -> None:
    old_size = data.draw(st.integers(1, new_size - 1))
    proof = TREE.consistency_proof(old_size, new_size)
    verify_consistency(old_size, new_size, ROOTS[old_size], ROOTS[new_size], proof)
    hashes = [ROOTS[old_size], *proof, ROOTS[new_size]]
    bit = data.draw(st.integers(0, 256 * len(hashes) - 1))
    hashes[bit // 256] = flip(hashes[bit // 256], bit % 256)
    with pytest.raises(RejectError):
        verify_consistency(old_size, new_size, hashes[0], hashes[-1], hashes[1:-1])


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.binary(max_size=40), max_size=150), st.data())
def test_arbitrary_leaf_data_matches_the_reference(entries: list[bytes], data: Any) -> None:
    # Arbitrary data, duplicates and empty leaves included.
    tree = MerkleTree.from_leaf_hashes(leaf_hash(entry) for entry in entries)
    assert tree.root() == ref.mth(entries)
    if entries:
        index = data.draw(st.integers(0, len(entries) - 1))
        old_size = data.draw(st.integers(1, len(entries)))
        assert tree.inclusion_proof(index, len(entries)) == ref.path(index, entries)
        assert tree.consistency_proof(old_size, len(entries)) == ref.proof(old_size, entries)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=12))
def test_random_appends_and_truncations_keep_the_bulk_state(steps: list[tuple[bool, int]]) -> None:
    # Model: a plain list of leaf hashes. After each step the tree must answer as if rebuilt.
    tree, model = MerkleTree(), []
    for serial, (grow, amount) in enumerate(steps):
        if grow:
            batch = [leaf_hash(b"step-%d-%d" % (serial, i)) for i in range(amount)]
            for leaf in batch:
                tree.append(leaf)
            model.extend(batch)
        else:
            keep = min(amount, len(model))
            tree.truncate(keep)
            del model[keep:]
        rebuilt = MerkleTree.from_leaf_hashes(model)
        assert tree.size == len(model)
        assert tree.root() == rebuilt.root()
        size = len(model)
        if size:
            assert tree.inclusion_proof(size - 1, size) == rebuilt.inclusion_proof(size - 1, size)
            assert tree.consistency_proof(1, size) == rebuilt.consistency_proof(1, size)


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(0, LEAF_COUNT))
def test_random_past_roots_equal_a_fresh_fold(size: int) -> None:
    assert TREE.root(size) == root_from_leaf_hashes(LEAF_HASHES[:size])


def test_compact_tree_equals_the_whole_tree_keeping_only_its_frontier() -> None:
    """``CompactTree`` (what the notary and ``verify`` keep): after every append its root is the whole tree's, the
    subtrees it says it completed are the whole tree's, it holds one hash per set bit of its size, and rebuilt
    from its frontier's roots it goes on the same way."""
    from ledger.integrity.merkle import CompactTree, IndexedTree, frontier

    whole, compact = MerkleTree(), CompactTree()
    assert compact.root() == whole.root()
    for i in range(2_100):
        leaf = hashlib.sha256(i.to_bytes(4, "big")).digest()
        whole.append(leaf)
        done = compact.append(leaf)
        assert compact.root() == whole.root(), i
        assert [h for h, _, _ in done] == list(range(1, len(done) + 1))
        for height, position, root in done:
            assert whole.subtree_root(height, position) == root
        assert len(compact._frontier) == bin(whole.size).count("1")
        assert set(frontier(whole.size)) == IndexedTree.needed(whole.size)
        if i % 211 == 0:
            again = CompactTree.from_frontier(whole.size, {(h, p): whole.subtree_root(h, p)
                                                           for h, p in frontier(whole.size)})
            assert again.root() == whole.root() and again.size == whole.size
            compact = again
    with pytest.raises(ValidationError):
        CompactTree.from_frontier(3, {})
