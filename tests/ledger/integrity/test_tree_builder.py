"""``verify``'s rebuilt trees (ledger/integrity/checkpoints.py ``TreeBuilder``) keep each partition's frontier only
and sample what the checkpoints name while the log streams by: the roots and covered sizes they give equal those of
a whole tree kept in memory, for any sizes and offsets — mid-record, at record boundaries, past the end, zero."""

from __future__ import annotations

import hashlib
import random
from types import SimpleNamespace

from ledger.integrity.checkpoints import TreeBuilder
from ledger.integrity.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from ledger.integrity.verify import Where


def test_sampled_roots_and_sizes_equal_the_whole_trees() -> None:
    rng = random.Random(5)
    for _ in range(30):
        # records at increasing offsets (gaps: rejected records), each with 1..6 events
        records, offset = [], 0
        for _ in range(rng.randrange(1, 60)):
            offset += rng.randrange(1, 3)
            records.append((offset, [hashlib.sha256(rng.randbytes(8)).digest() for _ in range(rng.randrange(1, 7))]))
        total = sum(len(evs) for _, evs in records)
        sizes = {0, total, total + 3, *(rng.randrange(0, total + 1) for _ in range(8))}
        offsets = {0, records[-1][0] + 1, records[-1][0] + 50, *(rng.randrange(0, offset + 5) for _ in range(8))}
        tp = ("t", 0)
        tb = TreeBuilder({tp: sizes}, {tp: offsets})
        whole = MerkleTree()
        bounds: list[tuple[int, int]] = []  # (offset + 1, size after the record)
        for off, evs in records:
            acc = SimpleNamespace(events=[SimpleNamespace(raw=e) for e in evs])
            tb.on_accepted(Where("t", 0, off), acc)  # type: ignore[arg-type]
            for e in evs:
                whole.append(leaf_hash(e))
            bounds.append((off + 1, whole.size))
        tb.finish()
        assert tb.size(tp) == whole.size == total
        for s in sizes:
            if s <= total:
                assert tb.root(tp, s) == (whole.root(s) if s else EMPTY_ROOT), s
            else:
                assert tb.root(tp, s) is None
        for x in offsets:
            expected = max((size for end, size in bounds if end <= x), default=0)
            assert tb.size_before(tp, x) == expected, (x, bounds)
