"""Version 1 proof files (hex, whole records, a keys summary), as `tokenledger prove` wrote them before
proof format v2, made from a v2 proof and the log: the tests prove such files still verify."""

from __future__ import annotations

import base64
from typing import Any

from ledger.integrity.checkpoints import registration_records
from ledger.integrity.proofs import verify_proof
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import Checkpoint


def proof_as_v1(h: Home, doc: dict[str, Any]) -> dict[str, Any]:
    """The version 1 file (hex, whole records, keys summary) `prove` wrote before v2, for the same proof."""
    lg = h.open_log()
    try:
        record = lg.read(doc["event"]["topic"], doc["event"]["partition"], doc["event"]["offset"], 1)[0].value
        cp_ref = doc["checkpoint"]
        cp_record = lg.read(h.topic_for("checkpoints"), 0, cp_ref["offset"], 1)[0].value
        batch, cp_batch = codec.decode_batch(record), codec.decode_batch(cp_record)
        regs = registration_records(lg, h.control_topic, {batch.key_id, cp_batch.key_id})
    finally:
        lg.close()
    cp = codec.decode_event(cp_batch.events[cp_ref["index"]]).event.body
    assert isinstance(cp, Checkpoint)
    index = doc["event"]["index"]
    report = verify_proof(doc, h.anchors())
    return {"format": "tokenledger-proof", "version": 1, "kind": "inclusion",
            "event": {"event_id": doc["event"]["event_id"], "topic": doc["event"]["topic"],
                      "partition": doc["event"]["partition"], "offset": doc["event"]["offset"], "index": index,
                      "bytes": batch.events[index].hex(), "record": record.hex()},
            "leaf_index": doc["leaf_index"], "tree_size": doc["tree_size"], "root_hash": cp.root_hash.hex(),
            "path": [base64.b64decode(p).hex() for p in doc["path"]],
            "checkpoint": {"event_id": cp_ref["event_id"], "topic": cp_ref["topic"], "partition": cp_ref["partition"],
                           "offset": cp_ref["offset"], "index": cp_ref["index"], "record": cp_record.hex()},
            "registrations": [r.hex() for r in regs], "keys": report.keys}
