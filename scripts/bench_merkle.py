"""Benchmark ledger/integrity/merkle.py against the machine's own SHA-256 limit, measured in the same run.

Usage: python scripts/bench_merkle.py [--leaves N]   (default 100,000 leaves; about 10-20 s)

Prints operations per second for appends, bulk builds, inclusion and consistency proofs
(generate and verify) on one tree, and beside each the ratio to raw ``hashlib.sha256`` calls
on 65-byte inputs (the size of one node hash input: 0x01 || left || right). For verification,
where the work is one node hash per proof element, it also prints the share of the raw hash
rate that went into those hashes: the rest is Python overhead. Each figure is the best of
REPEATS runs. Nothing is asserted: numbers are for reading, never for failing a build.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import ssl
import time
from collections.abc import Callable

from ledger.integrity.merkle import (
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES_DEFAULT = 100_000
PROOFS_PER_RUN = 20_000  # proofs generated or verified per timed run
RAW_HASHES_PER_RUN = 1_000_000
REPEATS = 3
NODE_INPUT_BYTES = 65


def best_rate(count: int, run: Callable[[], None]) -> float:
    """Operations per second of ``run`` (which performs ``count`` operations), best of REPEATS."""
    best_seconds = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        best_seconds = min(best_seconds, time.perf_counter() - started)
    return count / best_seconds


def raw_sha256_rate() -> float:
    data = bytes(range(NODE_INPUT_BYTES))
    sha256 = hashlib.sha256

    def run() -> None:
        for _ in range(RAW_HASHES_PER_RUN):
            sha256(data).digest()

    return best_rate(RAW_HASHES_PER_RUN, run)


def spread(count: int, limit: int, stride: int) -> list[int]:
    """``count`` deterministic values in [0, limit), scattered by a prime stride."""
    return [(i * stride) % limit for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=LEAVES_DEFAULT)
    leaves_count = parser.parse_args().leaves
    assert leaves_count >= 2

    hashes = [leaf_hash(b"bench-%d" % i) for i in range(leaves_count)]
    raw = raw_sha256_rate()

    def append_all() -> None:
        tree = MerkleTree()
        for value in hashes:
            tree.append(value)

    append_rate = best_rate(leaves_count, append_all)
    build_rate = best_rate(leaves_count, lambda: MerkleTree.from_leaf_hashes(hashes))

    tree = MerkleTree.from_leaf_hashes(hashes)
    size = tree.size
    root = tree.root()
    indices = spread(PROOFS_PER_RUN, size, 7919)
    inclusion = [tree.inclusion_proof(index, size) for index in indices]
    old_sizes = [1 + value for value in spread(PROOFS_PER_RUN, size - 1, 6007)]
    old_roots = [tree.root(old_size) for old_size in old_sizes]
    consistency = [tree.consistency_proof(old_size, size) for old_size in old_sizes]

    def generate_inclusion() -> None:
        for index in indices:
            tree.inclusion_proof(index, size)

    def verify_all_inclusion() -> None:
        for index, proof in zip(indices, inclusion, strict=True):
            verify_inclusion(hashes[index], index, size, proof, root)

    def generate_consistency() -> None:
        for old_size in old_sizes:
            tree.consistency_proof(old_size, size)

    def verify_all_consistency() -> None:
        for old_size, old_root, proof in zip(old_sizes, old_roots, consistency, strict=True):
            verify_consistency(old_size, size, old_root, root, proof)

    # Verifying hashes one node per proof element (inclusion); consistency also folds some of
    # them into the old root, so its count is a lower bound.
    inclusion_hashes = sum(map(len, inclusion)) / len(inclusion)
    consistency_hashes = sum(map(len, consistency)) / len(consistency)
    rows: list[tuple[str, float, float | None]] = [
        ("append one leaf hash", append_rate, None),
        ("bulk build (from_leaf_hashes), per leaf", build_rate, None),
    ]
    for name, run, hashes_per_operation in (
        ("inclusion proof: generate", generate_inclusion, None),
        ("inclusion proof: verify", verify_all_inclusion, inclusion_hashes),
        ("consistency proof: generate", generate_consistency, None),
        ("consistency proof: verify", verify_all_consistency, consistency_hashes),
    ):
        rows.append((name, best_rate(PROOFS_PER_RUN, run), hashes_per_operation))

    print(f"Merkle benchmark: tree of {leaves_count:,} leaves, best of {REPEATS} runs")
    print(f"Python {platform.python_version()}, hashlib on {ssl.OPENSSL_VERSION}")
    print(f"raw limit: hashlib.sha256 of {NODE_INPUT_BYTES}-byte inputs: {raw:,.0f} /s")
    print()
    print(f"{'operation':42} {'per second':>12} {'÷ raw':>8} {'hashes/op':>10} {'hash share':>11}")
    for name, rate, hashes_per_operation in rows:
        share = "" if hashes_per_operation is None else f"{rate * hashes_per_operation / raw:.0%}"
        per_op = "" if hashes_per_operation is None else f"{hashes_per_operation:.1f}"
        print(f"{name:42} {rate:12,.0f} {rate / raw:8.3f} {per_op:>10} {share:>11}".rstrip())
    print()
    print("÷ raw: operations per raw 65-byte SHA-256; hash share: (ops/s x hashes/op) / raw,")
    print("the part of the machine's hash rate doing proof hashing (the rest is Python).")


if __name__ == "__main__":
    main()
