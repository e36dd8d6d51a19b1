#!/usr/bin/env python3
"""Proof throughput and the notary's overhead, measured in one run on one log.

    python scripts/bench_proofs.py                 # 80k events (~1-2 min)
    python scripts/bench_proofs.py --events 20000

The log is the demo workload signed in batches of 100 events on the embedded log (built like
scripts/bench_processors.py). Prints:

- journal and notary events/s, each from offset 0 to caught up in a fresh process with a fresh
  DuckDB file, and their ratio (the notary's cost relative to the journal's);
- inclusion proofs through the proof API (ledger/integrity/proofs.py): full proof documents built per second
  (the event's record read from the log, the Merkle path, the signed checkpoint and registrations
  attached) and verified per second (every signature, the registration chain, the path);
- ``tokenledger prove``'s whole path per second (per proof: the leaf lookup by event id, the stored
  leaves and subtree roots of its path, the tail of the checkpoints topic, a scan of the control topic for
  the registrations, and the final check);
- the raw limit: ledger/integrity/merkle.py inclusion paths generated and verified per second on the same tree.

Nothing is asserted: numbers are for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_processors is a script in this folder
from bench_processors import measure_processor

ROOT = Path(__file__).resolve().parent.parent
PROOFS = 2_000  # proofs built and verified per API measurement
CLI_PROOFS = 20  # proofs through the whole `prove` path (each opens the notary's file and reads its index)
RAW_PROOFS = 50_000  # raw Merkle paths generated / verified




def run(name: str, home: Path) -> dict:
    return measure_processor(home, name)



def rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def proofs(home_path: Path) -> dict[str, float]:
    from ledger.integrity.checkpoints import registration_records
    from ledger.integrity.merkle import MerkleTree, verify_inclusion
    from ledger.integrity.proofs import build_inclusion_proof, verify_proof
    from ledger.sdk.home import Home
    from ledger.wire import codec
    from processors.services.proofs import _notary_checkpoints, _ref, checkpoint_now, notary_leaves, prove_event

    home = Home.open(home_path)
    log = home.open_log()
    try:
        checkpoint_now(home, log)  # the tree's current size, signed
        cp = max((e for e in _notary_checkpoints(home, log) if e.body.topic == home.topic),
                 key=lambda e: e.body.tree_size)
        size = cp.body.tree_size
        with notary_leaves(home) as q:
            rows = q("SELECT leaf_index, event_id, log_offset, leaf_hash FROM merkle_leaves WHERE topic = ? "
                     "ORDER BY leaf_index", [home.topic])
        tree = MerkleTree.from_leaf_hashes(bytes(r[3]) for r in rows[:size])
        assert tree.root() == cp.body.root_hash
        rng = random.Random(7)
        picks = [rows[rng.randrange(size)] for _ in range(PROOFS)]
        keys = {codec.decode_batch(r.value).key_id for r in log.read(home.topic, 0, 0, 1000)}
        regs = registration_records(log, home.control_topic, keys | {codec.decode_batch(cp.record).key_id})
        ref = _ref(cp)
        anchors = home.anchors()
        t = time.perf_counter()
        docs = []
        for index, eid, offset, _ in picks:
            rec = log.read(home.topic, 0, offset, 1)[0]
            docs.append(build_inclusion_proof(event_id=eid, topic=home.topic, partition=0, offset=offset,
                                              record=rec.value, leaf_index=index, tree_size=size,
                                              path=tree.inclusion_proof(index, size), checkpoint=ref,
                                              registrations=regs))
        built = time.perf_counter() - t
        t = time.perf_counter()
        for d in docs:
            verify_proof(d, anchors)
        verified = time.perf_counter() - t
        t = time.perf_counter()
        for _, eid, _, _ in picks[:CLI_PROOFS]:
            prove_event(home, log, eid)
        cli = time.perf_counter() - t
        idx = [rng.randrange(size) for _ in range(RAW_PROOFS)]
        t = time.perf_counter()
        paths = [tree.inclusion_proof(i, size) for i in idx]
        raw_gen = time.perf_counter() - t
        root = tree.root()
        leaves = [tree.leaf_hash_at(i) for i in idx]
        t = time.perf_counter()
        for i, lh, p in zip(idx, leaves, paths, strict=True):
            verify_inclusion(lh, i, size, p, root)
        raw_ver = time.perf_counter() - t
        size_kb = sum(len(json.dumps(d)) for d in docs) / len(docs) / 1024
    finally:
        log.close()
    return {"tree_size": size, "build": rate(PROOFS, built), "verify": rate(PROOFS, verified),
            "prove_cli": rate(CLI_PROOFS, cli), "raw_gen": rate(RAW_PROOFS, raw_gen),
            "raw_verify": rate(RAW_PROOFS, raw_ver), "proof_kb": size_kb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=80_000)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_processors import build_home

    print(f"tokenledger proof benchmark — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          "processors each in a fresh process, DuckDB threads=1, input signed in batches of 100 events")
    with tempfile.TemporaryDirectory() as d:
        home = Path(d) / "home"
        t = time.perf_counter()
        events = build_home(home, a.events)
        print(f"  built a log of {events:,} events in {time.perf_counter() - t:.1f}s")
        j = run("journal", home)
        n = run("notary", home)
        p = proofs(home)
    je, ne = rate(j["events"], j["seconds"]), rate(n["events"], n["seconds"])
    print()
    print(f"{'processor':>10} {'events':>9} {'seconds':>8} {'events/s':>10}")
    print(f"{'journal':>10} {j['events']:>9,} {j['seconds']:>8.2f} {je:>10,.0f}")
    print(f"{'notary':>10} {n['events']:>9,} {n['seconds']:>8.2f} {ne:>10,.0f}")
    print(f"notary / journal time: {n['seconds'] / j['seconds']:.2f}  (notary rate = {ne / je:.2f} x the journal's)")
    print()
    print(f"inclusion proofs on a tree of {p['tree_size']:,} leaves (proof file ~{p['proof_kb']:.1f} KiB):")
    print(f"  proof API: build {p['build']:>10,.0f} /s   verify (signatures + registrations + path) "
          f"{p['verify']:>8,.0f} /s")
    print(f"  `prove` whole path (index lookups, checkpoint tail, control scan): {p['prove_cli']:,.1f} /s")
    print(f"  raw merkle: path {p['raw_gen']:>10,.0f} /s   verify_inclusion {p['raw_verify']:>10,.0f} /s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
