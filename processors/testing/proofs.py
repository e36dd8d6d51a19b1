"""Proof files of the earlier formats, made from the current one: version 2 (one event, base64 signed items with
their batch root and signer, paths as lists) from a version 3 file of one event, and version 1 (hex, whole records,
a keys summary) from a version 2 file and the log. The tests prove such files still verify."""

from __future__ import annotations

import base64
from typing import Any

from ledger.integrity.checkpoints import registration_records
from ledger.integrity.merkle import root_from_inclusion
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


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _split(text: str) -> list[bytes]:
    b = base64.b64decode(text)
    return [b[i:i + 32] for i in range(0, len(b), 32)]


def item_as_v2(item: dict[str, Any]) -> dict[str, Any]:
    """A v3 signed item in the v2 shape: the audit path as a list, the batch root and the signer written down."""
    if "record" in item:
        return dict(item)
    raw = base64.b64decode(item["event"])
    path = _split(item["batch_path"])
    root = root_from_inclusion(codec.event_hash(raw), item["index"], item["count"], path)
    return {"event": item["event"], "index": item["index"], "count": item["count"], "path": [_b64(h) for h in path],
            "root": _b64(root), "signer": codec.decode_event(raw).event.signer_id, "key_id": item["key_id"],
            "signature": item["signature"]}


def _checkpoint_as_v2(item: dict[str, Any]) -> dict[str, Any]:
    cp = codec.decode_event(base64.b64decode(item["event"])).event.body if "event" in item else None
    assert isinstance(cp, Checkpoint)
    return {"event_id": item["event_id"], "topic": cp.topic, "partition": cp.partition, "offset": item["offset"],
            **item_as_v2({k: v for k, v in item.items() if k not in ("event_id", "offset")})}


def proof_as_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """The version 2 file `prove` wrote before proof format v3, for the same proof (one event, or a consistency)."""
    regs = [item_as_v2(r) for r in doc["registrations"]]
    if doc["kind"] == "consistency":
        return {"format": "tokenledger-proof", "version": 2, "kind": "consistency",
                "old": _checkpoint_as_v2(doc["old"]), "new": _checkpoint_as_v2(doc["new"]),
                "path": [_b64(h) for h in _split(doc["path"])], "registrations": regs}
    (ev,) = doc["events"]
    cp = _checkpoint_as_v2(doc["checkpoints"][ev["checkpoint"]])
    body = codec.decode_event(base64.b64decode(doc["checkpoints"][ev["checkpoint"]]["event"])).event.body
    assert isinstance(body, Checkpoint)
    item = {k: v for k, v in ev.items() if k not in ("event_id", "offset", "checkpoint", "leaf_index", "path")}
    return {"format": "tokenledger-proof", "version": 2, "kind": "inclusion",
            "event": {"event_id": ev["event_id"], "topic": cp["topic"], "partition": cp["partition"],
                      "offset": ev["offset"], **item_as_v2(item)},
            "leaf_index": ev["leaf_index"], "tree_size": body.tree_size,
            "path": [_b64(h) for h in _split(ev["path"])], "checkpoint": cp, "registrations": regs}
