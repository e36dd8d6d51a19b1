#!/usr/bin/env python3
"""Generate the golden vectors of the wire format: event bytes, hashes, ids, batch signatures.

Keys come from fixed seeds (Ed25519 signatures are deterministic), times are fixed, so the output
never changes unless the format does. ``tests/test_golden.py`` regenerates the vectors, compares
them with the checked-in file and pins the file's SHA-256: any change to a persisted format fails
loudly. After a deliberate format change: first keep the pinned file as
``events-<type>-<old fingerprint>.json`` (``tests/test_golden.py`` goes on decoding and verifying
those old bytes), then run this script, review the diff, update the pin.

Batches are written in the current envelope (``codec.BATCH_VERSION``: the signature covers the
Merkle root of the event hashes); ``events-signedbatch-abb45c45ba342bed.json`` holds v1 envelopes.

    python scripts/gen_vectors.py            # write tests/vectors/ledger/events.json, print its SHA-256
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from ledger.integrity.keys import SigningKey
from ledger.wire import codec, schemas
from ledger.wire.events import (
    Action,
    AgentRegistered,
    Allocation,
    AllocationRule,
    BudgetAlert,
    BudgetPolicy,
    BudgetTransfer,
    Checkpoint,
    ClockPolicy,
    Compute,
    Context,
    Cosignature,
    Data,
    DeliveryAttempt,
    Deposit,
    Flow,
    Grant,
    Interaction,
    KeyRevoked,
    KeyRotated,
    LlmUsage,
    Outcome,
    PriceSet,
    Reservation,
    Settlement,
    SettlementRule,
    StateCheckpoint,
    Trust,
    WebhookSink,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "ledger" / "events.json"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(name, hashlib.sha256(b"tokenledger-golden-" + name.encode()).digest())


def build() -> dict:
    op, alice, bob, carol, notary = key("operator"), key("alice"), key("bob"), key("carol"), key("notary")
    ctx = Context(org="acme", project="p1", task="t1", stage="draft", run="r1", labels={"z": "last", "a": "first"})
    inter = Interaction("i-1", "alice", "bob", "anthropic", "claude-sonnet-4-6", "anthropic", "claude-opus-4-6",
                        Flow(10_000), Flow(10_000, 2_000), Flow(3_000), Flow(3_000))
    inter = replace(inter, cosignature=Cosignature(bob.key_id, bob.sign(codec.cosigning_bytes(inter))))
    streams = {
        "operator": (op, [
            AgentRegistered("operator", op.key_id, op.public.raw, "operator"),
            AgentRegistered("alice", alice.key_id, alice.public.raw, "agent", 2, "acme", "p1", {"team": "research"}),
            AgentRegistered("bob", bob.key_id, bob.public.raw),
            AgentRegistered("carol", carol.key_id, carol.public.raw, "processor"),
            AgentRegistered("notary", notary.key_id, notary.public.raw, "processor"),
            BudgetPolicy("agent", "alice", "action", 5_000, 86_400_000_000),
            PriceSet("anthropic", "claude-sonnet-4-6", 3_000_000, 15_000_000, 300_000, 3_750_000, None, 0),
            AllocationRule("r-shapley", "shapley", {"standalone_cost_b": "0"}),
            SettlementRule("s-1", "tier_2_rule_based", "shapley", 3_600_000_000, 10_000),
            Grant("notary", "notary"),
            Grant("bob", "backfill", "", 30 * 86_400_000_000),
            Grant("alice", "reserve", "project:p1"),
            Grant("bob", "backfill", "", 0, False),
            ClockPolicy(600_000_000, 30_000_000),
            KeyRotated("carol", carol.key_id, key("carol-2").key_id, key("carol-2").public.raw),
            KeyRevoked("carol", key("carol-2").key_id, "test vector"),
            AgentRegistered("importer", key("importer").key_id, key("importer").public.raw),
            Grant("importer", "backfill", "", 30 * 86_400_000_000),
            WebhookSink("ops-pager", "https://hooks.example.test/tokenledger?team=ops", ("suspended", "hard_limit"),
                        hashlib.sha256(b"golden webhook secret").digest()),
            WebhookSink("ops-pager", "https://hooks.example.test/tokenledger?team=ops", ("rejections",),
                        hashlib.sha256(b"golden webhook secret").digest(), False),
        ]),
        "alice": (alice, [
            Action("llm.call", 1500, "sha256:00ff",
                   LlmUsage("anthropic", "claude-sonnet-4-6", 1200, 300, 400, 100, 50)),
            Data(52_000, 1_024, "sha256:aa", "sha256:bb", 125_000),
            Compute("node-1", 40, 2, 2048, 4),
            Trust("bob", "accuracy", -250, 86_400_000_000, "review"),
            inter,
            Reservation("res-1", "reserve", "agent", "alice", "usd", 250_000, T0 + 60_000_000),
            Outcome("t1", 850, 900, True),
            Outcome("t0", None, 700, True, "bob"),
            Deposit("dep-1", "create", "alice", "bob", 1_875_000, "unknown", 7_500, "i-1"),
            Deposit("dep-1", "refund", "alice", "bob"),
        ]),
        "notary": (notary, [
            Checkpoint("ledger.events", 0, 7, bytes(range(32)), 12, T0 + 4),
            StateCheckpoint("journal", {"ledger.events/0": 12, "ledger.control/0": 10}, "ab" * 32, "{}"),
            Allocation("e" * 32, "i-1", "alice", "bob", "shapley", 275_000, 192_000, 83_000, 33_000,
                       "requestor_to_responder", 150_000, 41_000, 75_000, 9_000, {"standalone_cost_b": "0"}),
            Settlement("s-1", T0, T0 + 3_600_000_000, "alice", "bob", 33_000, "shapley", "tier_2_rule_based",
                       "settled", "ledger", "tx-1"),
            BudgetAlert("agent", "alice", "action", "soft_limit", T0, 5000, 4100, 100, "80% used"),
            BudgetTransfer("action", "bob", "alice", 400, T0, "shortfall"),
            DeliveryAttempt("d" * 32, "ops-pager", 1, "retrying", 503, "HTTP 503: busy", T0 + 10_000_000),
            DeliveryAttempt("d" * 32, "ops-pager", 2, "delivered", 204),
        ]),
        # an importer recording a call on alice's behalf (Context.agent, context v2)
        "importer": (key("importer"), [
            Action("llm.call", 1000, None, LlmUsage("openai", "gpt-4.1", 900, 100, 300, 0, 20)),
        ]),
    }
    out: dict = {"schemas": {n: s.fingerprint_hex for n, s in schemas.current().items()},
                 "keys": {}, "events": [], "batches": []}
    for name, (k, bodies) in streams.items():
        out["keys"][name] = {"key_id": k.key_id, "public_key": k.public.raw.hex()}
        prev = bytes(32)
        raws, hashes = [], []
        for i, body in enumerate(bodies):
            idem = f"{name}-{i}" if i % 2 else None
            content = codec.encode_content(T0 + i, replace(ctx, agent="alice") if name == "importer" else ctx, body)
            eid = codec.derive_event_id(name, idem, content)
            raw = codec.assemble_event(event_id=eid, signer_id=name, seq=i + 1, prev_hash=prev,
                                       idempotency_key=idem, content=content)
            h = codec.event_hash(raw)
            out["events"].append({"desc": f"{name} #{i + 1}: {body.KIND}", "signer": name, "seq": i + 1,
                                  "kind": body.KIND, "event_id": eid, "bytes": raw.hex(), "hash": h.hex(),
                                  "prev_hash": prev.hex()})
            raws.append(raw)
            hashes.append(h)
            prev = h
        msg = codec.signing_bytes(codec.BATCH_VERSION, name, k.key_id, hashes)
        sig = k.sign(msg)
        out["batches"].append({"desc": f"one batch of {name}'s {len(raws)} events", "signer": name,
                               "version": codec.BATCH_VERSION, "root": codec.batch_root(hashes).hex(),
                               "signing_bytes": msg.hex(), "signature": sig.hex(),
                               "record": codec.encode_batch(name, k.key_id, raws, sig, codec.BATCH_VERSION).hex()})
    return out


def render(vectors: dict) -> str:
    return json.dumps(vectors, indent=1, sort_keys=True) + "\n"


def main() -> int:
    text = render(build())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
    print(f"sha256 {hashlib.sha256(text.encode()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
