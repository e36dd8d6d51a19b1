"""Write the golden Merkle vectors under tests/vectors/merkle/ from the naive RFC 9162 reference.

Usage: python scripts/gen_merkle_vectors.py   (from anywhere; paths are relative to this file)

The vectors come from ledger/testing/merkle_ref.py, never from ledger/integrity/merkle.py, so the test
that loads them cross-checks the real implementation against an independent transcription of
the RFC. Before writing, the reference itself is checked against answers published by
Certificate Transparency implementations (the RFC 6962 test tree), so the vectors are not just
self-consistent but interoperable.

Output is deterministic: sorted keys, fixed indentation, a trailing newline. The last line
printed is one SHA-256 over the canonical JSON of both files; tests/test_merkle.py pins it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ledger.testing import merkle_ref as ref

REPOSITORY = Path(__file__).resolve().parents[1]

VECTORS_DIRECTORY = REPOSITORY / "tests" / "vectors" / "merkle"
FORMAT = "tokenledger-merkle-vectors/1"
LEAF_INPUT_RULE = "generated trees: leaf i is the ASCII bytes 'leaf-<i>' (b'leaf-%d' % i)"
# Every index and every (old, new) pair up to this size: every shape of the recursion up to
# five levels, while each file stays well under 1 MB (about 0.3 MB each).
SIZE_EXHAUSTIVE_MAX = 32
# Around powers of two, where off-by-one errors in the split live, and two unremarkable sizes.
SIZES_LARGE = (100, 255, 256, 257, 300)
FILE_SIZE_BYTES_MAX = 1_000_000

# The RFC 6962 test tree: leaf inputs and the root for each size 1..8, as published by
# certificate-transparency (merkle_tree_test.cc) and transparency-dev/merkle
# (testonly/constants.go).
CT_LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# Proofs over that tree from transparency-dev/merkle proof/verify_test.go (its leaf numbers are
# 1-based; these indices are 0-based).
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
    (6, 7): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
# Single hashes from transparency-dev/merkle rfc6962/rfc6962_test.go, each reproducible with
# `echo -n <hex> | xxd -r -p | sha256sum` over the prefixed input.
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256sum of ""
LEAF_L123456 = "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"  # 00 4c31...36
NODE_N123_N456 = "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"  # 01 4e31...36


def generated_inputs(count: int) -> list[bytes]:
    return [b"leaf-%d" % i for i in range(count)]


def ct_inputs() -> list[bytes]:
    return [bytes.fromhex(h) for h in CT_LEAF_INPUTS]


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def check_reference_against_published() -> None:
    """The oracle must agree with other people's answers before its own are worth pinning."""
    entries = ct_inputs()
    assert ref.mth([]).hex() == EMPTY_ROOT
    assert ref.hash_leaf(b"L123456").hex() == LEAF_L123456
    assert ref.hash_children(b"N123", b"N456").hex() == NODE_N123_N456
    for size, root in CT_ROOTS.items():
        assert ref.mth(entries[:size]).hex() == root, f"CT root of size {size}"
    for (index, size), proof in CT_INCLUSION.items():
        assert hexes(ref.path(index, entries[:size])) == proof, f"CT path {index}/{size}"
    for (old_size, new_size), proof in CT_CONSISTENCY.items():
        got = hexes(ref.proof(old_size, entries[:new_size]))
        assert got == proof, f"CT proof {old_size} -> {new_size}"


def inclusion_vector(
    desc: str, tree: str, entries: list[bytes], index: int, size: int
) -> dict[str, Any]:
    return {
        "desc": desc,
        "tree": tree,
        "leaf_index": index,
        "tree_size": size,
        "leaf_hash": ref.hash_leaf(entries[index]).hex(),
        "root": ref.mth(entries[:size]).hex(),
        "proof": hexes(ref.path(index, entries[:size])),
    }


def consistency_vector(
    desc: str, tree: str, entries: list[bytes], old: int, new: int
) -> dict[str, Any]:
    return {
        "desc": desc,
        "tree": tree,
        "old_size": old,
        "new_size": new,
        "old_root": ref.mth(entries[:old]).hex(),
        "new_root": ref.mth(entries[:new]).hex(),
        "proof": hexes(ref.proof(old, entries[:new])),
    }


def known_answers() -> list[dict[str, Any]]:
    answers: list[dict[str, Any]] = [
        {
            "desc": "empty tree: MTH({}) = SHA-256 of the empty string",
            "kind": "root",
            "leaf_inputs": [],
            "root": EMPTY_ROOT,
        },
        {
            "desc": "leaf hash SHA-256(0x00 || 'L123456')",
            "kind": "leaf_hash",
            "input": b"L123456".hex(),
            "hash": LEAF_L123456,
        },
        {
            "desc": "node hash SHA-256(0x01 || 'N123' || 'N456')",
            "kind": "node_hash",
            "left": b"N123".hex(),
            "right": b"N456".hex(),
            "hash": NODE_N123_N456,
        },
    ]
    for size, root in CT_ROOTS.items():
        desc = f"RFC 6962 test tree, first {size} leaves"
        if size == 1:
            desc += " (one empty leaf: root = SHA-256(0x00))"
        inputs = CT_LEAF_INPUTS[:size]
        answers.append({"desc": desc, "kind": "root", "leaf_inputs": inputs, "root": root})
    return answers


def build_inclusion() -> dict[str, Any]:
    largest = max(SIZES_LARGE)
    entries = generated_inputs(largest)
    cases = [(index, size) for size in range(1, SIZE_EXHAUSTIVE_MAX + 1) for index in range(size)]
    cases += [(index, size) for size in SIZES_LARGE for index in ref.spot_indices(size)]
    vectors = [
        inclusion_vector(f"RFC 6962 test tree: leaf {i} of {n}", "rfc6962", ct_inputs(), i, n)
        for i, n in CT_INCLUSION
    ]
    vectors += [
        inclusion_vector(f"leaf {i} of {n}", "generated", entries, i, n) for i, n in cases
    ]
    return {
        "format": FORMAT,
        "leaf_input_rule": LEAF_INPUT_RULE,
        "known_answers": known_answers(),
        "vectors": vectors,
    }


def build_consistency() -> dict[str, Any]:
    largest = max(SIZES_LARGE)
    entries = generated_inputs(largest)
    cases = [(old, new) for new in range(1, SIZE_EXHAUSTIVE_MAX + 1) for old in range(1, new + 1)]
    cases += [(old, new) for new in SIZES_LARGE for old in [*ref.spot_indices(new), new] if old >= 1]
    cases += [(255, 256), (256, 257), (255, 257), (100, 300), (257, 300)]
    vectors = [
        consistency_vector(f"RFC 6962 test tree: {m} -> {n}", "rfc6962", ct_inputs(), m, n)
        for m, n in CT_CONSISTENCY
    ]
    vectors += [
        consistency_vector(f"{m} -> {n}", "generated", entries, m, n) for m, n in cases
    ]
    return {"format": FORMAT, "leaf_input_rule": LEAF_INPUT_RULE, "vectors": vectors}


def stability_digest(inclusion: dict[str, Any], consistency: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of both files; the test computes the same and pins it."""
    canonical = json.dumps(
        {"consistency": consistency, "inclusion": inclusion}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write(name: str, content: dict[str, Any]) -> int:
    text = json.dumps(content, sort_keys=True, indent=1) + "\n"
    size_bytes = len(text.encode("utf-8"))
    assert size_bytes < FILE_SIZE_BYTES_MAX, f"{name} is {size_bytes} bytes"
    (VECTORS_DIRECTORY / name).write_text(text, encoding="utf-8")
    return size_bytes


def main() -> None:
    check_reference_against_published()
    inclusion = build_inclusion()
    consistency = build_consistency()
    VECTORS_DIRECTORY.mkdir(parents=True, exist_ok=True)
    for name, content in (("inclusion.json", inclusion), ("consistency.json", consistency)):
        size_bytes = write(name, content)
        print(f"{VECTORS_DIRECTORY / name}: {len(content['vectors'])} vectors, {size_bytes} bytes")
    print(f"stability sha256: {stability_digest(inclusion, consistency)}")


if __name__ == "__main__":
    main()
