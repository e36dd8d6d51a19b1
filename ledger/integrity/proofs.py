"""Self-contained proof files: an event's inclusion in a signed checkpoint, and one checkpoint
extending another — built from log bytes and checked offline with nothing but operator public keys.

A proof file is one JSON document (``PROOF_FORMAT``, ``PROOF_VERSION``). Every byte string is
lower-case hex. Kinds:

``inclusion``
    ``event``: ``event_id``, ``topic``, ``partition``, ``offset`` (where the record was read; a
    hint, bound only by the checkpoint's ``next_offset``), ``index`` (position in its batch),
    ``bytes`` (the event's exact bytes = the Merkle leaf data), ``record`` (the whole signed batch
    it travelled in: signer, key id, every event, the Ed25519 signature over their hashes);
    ``leaf_index``, ``tree_size``, ``root_hash``, ``path`` (the RFC 9162 inclusion path);
    ``checkpoint``: a checkpoint reference (below).
``consistency``
    ``old`` and ``new`` checkpoint references of one partition and ``path`` (the RFC 9162
    consistency proof from ``old.tree_size`` to ``new.tree_size``).

A checkpoint reference is ``event_id``, ``topic``/``partition``/``offset`` of the record on the
checkpoints topic (hints), ``index`` in its batch and ``record`` (the signed batch, by a processor
key, holding the ``Checkpoint`` event). Both kinds carry ``registrations`` (operator-signed
control records, in log order, that register — and rotate or revoke — every key the proof relies
on) and ``keys`` (key id → signer, role, public key, fingerprint = SHA-256 of the key: a readable
summary that verification re-derives from the registrations and requires to match).

Trust: ``verify_proof(doc, trusted_operator_keys)`` believes only the operator keys it is given.
A registration record must be signed by one of them (or by an operator key registered earlier in
the same list); the event's batch by a key those records registered, unrevoked at the event's
time *as far as the included records show* (a proof cannot show the absence of a later control
event: ``tokenledger verify`` over the whole control log can); the checkpoint by a registered key
of role ``processor`` whose signer holds the operator's ``notary`` grant — the ``registrations``
carry the operator-signed ``grant`` records, so a checkpoint by any other processor key (the budgets
processor's, say) proves nothing. Revocation inside a proof is judged by event time: the proof's
records are single records lifted from the log without their append times, so log order between the
event's record and a later revocation is not in the bundle (``tokenledger verify`` judges by log order).

Never: no I/O, no clock, no log access. Every failure raises ``RejectError`` with a code
(CHECKPOINT_MISMATCH, BAD_SIGNATURE, UNKNOWN_KEY, NOT_PROCESSOR, NOT_OPERATOR, BAD_SCHEMA, ...)
and evidence naming the part of the proof that failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger import limits
from ledger.errors import RejectCode, RejectError, ValidationError
from ledger.integrity.keyring import KeyInfo, KeyRing
from ledger.integrity.keys import key_id_of, public_key_fingerprint
from ledger.integrity.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.limits import MAX_PROOF_FILE_BYTES, MAX_PROOF_HASHES, MAX_REGISTRATION_RECORDS
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Checkpoint, Grant, KeyRevoked, KeyRotated
from ledger.wire.vocab import Capability

PROOF_FORMAT = "tokenledger-proof"
PROOF_VERSION = 1


@dataclass(frozen=True)
class CheckpointRef:
    """A Checkpoint event on the log: the signed record holding it and where it is."""

    event_id: str
    topic: str
    partition: int
    offset: int
    index: int
    record: bytes

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "topic": self.topic, "partition": self.partition, "offset": self.offset,
                "index": self.index, "record": self.record.hex()}


@dataclass
class ProofReport:
    """What a verified proof establishes (all of it checked, none of it taken from the file unchecked)."""

    kind: str
    topic: str
    partition: int
    tree_size: int
    root_hash: str
    checkpoint_event_id: str
    checkpoint_signer: str
    event_id: str | None = None
    signer_id: str | None = None
    leaf_index: int | None = None
    old_tree_size: int | None = None
    old_root_hash: str | None = None
    old_checkpoint_event_id: str | None = None
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


# ---------------------------------------------------------------- signed records


def open_record(ring: KeyRing, value: bytes, *, role: str | None = None, part: str = "record",
                only: int | None = None) -> tuple[codec.DecodedBatch, list[codec.DecodedEvent], KeyInfo]:
    """Decode one signed batch and check it against ``ring``: key registered, owned by the signer,
    unrevoked at the batch's latest event time, every event the signer's, the signature over the event
    hashes — and, if given, the key's role. No chain check (a proof carries single records).

    ``only``: decode just the event at that index (the one a proof is about; the signature still
    covers every event through its hash) and judge revocation at its time; the list returned then
    holds that one event."""
    try:
        batch = codec.decode_batch(value)
        if only is not None and not 0 <= only < len(batch.events):
            raise RejectError(RejectCode.BAD_SCHEMA, f"{part}: index is outside its batch", actual=only,
                              expected=f"0..{len(batch.events) - 1}")
        raws = batch.events if only is None else [batch.events[only]]
        decoded = [codec.decode_event(raw) for raw in raws]
        info = ring.check(batch.signer_id, batch.key_id, max(d.event.event_time_us for d in decoded))
    except RejectError as e:
        e.evidence.setdefault("part", part)
        raise
    for d in decoded:
        if d.event.signer_id != batch.signer_id:
            raise RejectError(RejectCode.SIGNER_MISMATCH, f"{part}: event signer differs from the batch signer",
                              part=part, event_id=d.event.event_id, expected=batch.signer_id,
                              actual=d.event.signer_id)
    hashes = [d.hash for d in decoded] if only is None else [codec.event_hash(raw) for raw in batch.events]
    message = codec.batch_signing_bytes(batch.signer_id, batch.key_id, hashes)
    if not info.public.verify(batch.signature, message):
        raise RejectError(RejectCode.BAD_SIGNATURE, f"{part}: batch signature does not verify", part=part,
                          signer_id=batch.signer_id, key_id=batch.key_id)
    if role is not None and info.role != role:
        code = RejectCode.NOT_PROCESSOR if role == "processor" else RejectCode.NOT_OPERATOR
        raise RejectError(code, f"{part}: signed by a key of role {info.role}, not {role}", part=part,
                          signer_id=batch.signer_id, key_id=batch.key_id, expected=role, actual=info.role)
    return batch, decoded, info


def trust_registrations(records: Sequence[bytes], trusted_operator_keys: Mapping[str, bytes]) -> KeyRing:
    """The key ring the given operator-signed control records build, starting from the trusted keys.

    Trusted keys are matched by key id, so the names they are given under do not matter; a record
    signed by any other key (not registered as an operator by an earlier record) is refused."""
    if len(records) > MAX_REGISTRATION_RECORDS:
        raise RejectError(RejectCode.OVERSIZED, "too many registration records", part="registrations",
                          expected=MAX_REGISTRATION_RECORDS, actual=len(records))
    trusted = {key_id_of(bytes(raw)): bytes(raw) for raw in trusted_operator_keys.values()}
    anchors: dict[str, bytes] = {}
    for i, value in enumerate(records):
        try:
            batch = codec.decode_batch(value)
        except RejectError as e:
            e.evidence.setdefault("part", f"registrations[{i}]")
            raise
        if batch.key_id in trusted:
            anchors.setdefault(batch.signer_id, trusted[batch.key_id])
    ring = KeyRing(anchors)
    for i, value in enumerate(records):
        part = f"registrations[{i}]"
        _, decoded, info = open_record(ring, value, role="operator", part=part)
        for d in decoded:
            body = d.event.body
            if not body.CONTROL:
                continue
            if isinstance(body, Grant) and body.agent_id not in ring.agents:
                # a grant to a signer the proof does not rely on (the bundle carries every notary grant,
                # not every registration): it cannot matter to this proof
                continue
            try:
                ring.validate_control(info, body)
            except RejectError as e:
                e.evidence.setdefault("part", part)
                raise
            ring.apply(body, d.event.event_time_us)
    return ring


def is_notary_grant(body: Any) -> bool:
    """A ``grant`` (or withdrawal) of the notary capability: a proof carries these with its registrations."""
    return isinstance(body, Grant) and body.capability == Capability.NOTARY.value


def require_notary(ring: KeyRing, signer_id: str, key_id: str, part: str) -> None:
    """Refuse a checkpoint whose signer does not hold the operator's ``notary`` grant in ``ring``."""
    if ring.granted(signer_id, Capability.NOTARY.value) is None:
        raise RejectError(RejectCode.NOT_GRANTED, f"{part}: the signer holds no notary grant from the operator",
                          part=part, signer_id=signer_id, key_id=key_id, expected="notary grant")


def control_key_ids(body: Any) -> set[str]:
    """Key ids a control event is about (the registrations a proof must carry for a key)."""
    if isinstance(body, AgentRegistered):
        return {body.key_id}
    if isinstance(body, KeyRotated):
        return {body.old_key_id, body.new_key_id}
    if isinstance(body, KeyRevoked):
        return {body.key_id}
    return set()


# ---------------------------------------------------------------- building


def _keys_summary(registrations: Sequence[bytes], wanted: set[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for value in registrations:
        for raw in codec.decode_batch(value).events:
            body = codec.decode_event(raw).event.body
            if isinstance(body, AgentRegistered) and body.key_id in wanted:
                out[body.key_id] = _key_entry(body.agent_id, body.role, body.public_key)
            elif isinstance(body, KeyRotated) and body.new_key_id in wanted:
                old_role = next((v["role"] for v in out.values() if v["signer_id"] == body.agent_id), "agent")
                out[body.new_key_id] = _key_entry(body.agent_id, old_role, body.new_public_key)
    return out


def _key_entry(signer_id: str, role: str, public_key: bytes) -> dict[str, str]:
    return {"signer_id": signer_id, "role": role, "public_key": public_key.hex(),
            "fingerprint": public_key_fingerprint(public_key)}


def build_inclusion_proof(*, event_id: str, topic: str, partition: int, offset: int, record: bytes,
                          leaf_index: int, tree_size: int, path: Sequence[bytes], checkpoint: CheckpointRef,
                          registrations: Sequence[bytes]) -> dict[str, Any]:
    """The proof document for one event (see the module docstring); nothing here is trusted until
    ``verify_proof`` has checked it."""
    batch = codec.decode_batch(record)
    # the id is in each event's first bytes: decode only the candidates
    tag = event_id.encode()
    matches = [i for i, raw in enumerate(batch.events)
               if tag in raw[:64] and codec.decode_event(raw).event.event_id == event_id]
    if not matches:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event is not in the record at its offset",
                          event_id=event_id, topic=topic, partition=partition, offset=offset)
    index = matches[0]
    cp_batch = codec.decode_batch(checkpoint.record)
    cp = codec.decode_event(cp_batch.events[checkpoint.index]).event.body
    if not isinstance(cp, Checkpoint):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the checkpoint reference holds no checkpoint",
                          event_id=checkpoint.event_id, actual=cp.KIND)
    return {
        "format": PROOF_FORMAT, "version": PROOF_VERSION, "kind": "inclusion",
        "event": {"event_id": event_id, "topic": topic, "partition": partition, "offset": offset, "index": index,
                  "bytes": batch.events[index].hex(), "record": record.hex()},
        "leaf_index": leaf_index, "tree_size": tree_size, "root_hash": cp.root_hash.hex(),
        "path": [h.hex() for h in path],
        "checkpoint": checkpoint.to_json(),
        "registrations": [r.hex() for r in registrations],
        "keys": _keys_summary(registrations, {batch.key_id, cp_batch.key_id}),
    }


def build_consistency_proof(*, old: CheckpointRef, new: CheckpointRef, path: Sequence[bytes],
                            registrations: Sequence[bytes]) -> dict[str, Any]:
    """The proof document that ``new`` extends ``old`` (two checkpoints of one partition)."""
    wanted = {codec.decode_batch(old.record).key_id, codec.decode_batch(new.record).key_id}
    return {
        "format": PROOF_FORMAT, "version": PROOF_VERSION, "kind": "consistency",
        "old": old.to_json(), "new": new.to_json(), "path": [h.hex() for h in path],
        "registrations": [r.hex() for r in registrations],
        "keys": _keys_summary(registrations, wanted),
    }


# ---------------------------------------------------------------- reading and verifying


def load_proof(data: bytes | str) -> dict[str, Any]:
    """Parse a proof file's bytes (size-bounded); malformed JSON is BAD_SCHEMA / TRUNCATED."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_PROOF_FILE_BYTES:
        raise RejectError(RejectCode.OVERSIZED, "proof file larger than the limit", expected=MAX_PROOF_FILE_BYTES,
                          actual=len(data))
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        code = RejectCode.TRUNCATED if "Expecting" in str(e) or "Unterminated" in str(e) else RejectCode.BAD_SCHEMA
        raise RejectError(code, f"proof file is not valid JSON: {e}", part="file") from None
    if not isinstance(doc, dict):
        raise RejectError(RejectCode.BAD_SCHEMA, "proof file is not a JSON object", part="file")
    return doc


def _get(doc: Mapping[str, Any], key: str, typ: type, part: str) -> Any:
    v = doc.get(key) if isinstance(doc, Mapping) else None
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} is missing or not a {typ.__name__}",
                          part=f"{part}.{key}", actual=type(v).__name__)
    return v


def _hex(doc: Mapping[str, Any], key: str, part: str, size: int | None = None) -> bytes:
    s = _get(doc, key, str, part)
    try:
        b = bytes.fromhex(s)
    except ValueError:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} is not hex", part=f"{part}.{key}") from None
    if size is not None and len(b) != size:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} must be {size} bytes", part=f"{part}.{key}",
                          expected=size, actual=len(b))
    return b


def _path(doc: Mapping[str, Any]) -> list[bytes]:
    items = _get(doc, "path", list, "proof")
    if len(items) > MAX_PROOF_HASHES:
        raise RejectError(RejectCode.OVERSIZED, "proof path too long", part="path", expected=MAX_PROOF_HASHES,
                          actual=len(items))
    return [_hex({"p": h}, "p", f"path[{i}]", limits.HASH_BYTES) for i, h in enumerate(items)]


def _checkpoint(ring: KeyRing, ref: Mapping[str, Any], part: str) -> tuple[Checkpoint, str, str, str]:
    """(checkpoint body, its event id, signer, key id) from a verified checkpoint reference."""
    if not isinstance(ref, Mapping):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part} is missing", part=part)
    record = _hex(ref, "record", part)
    index = _get(ref, "index", int, part)
    batch, decoded, _ = open_record(ring, record, role="processor", part=part, only=index)
    ev = decoded[0].event
    if not isinstance(ev.body, Checkpoint):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part} is a {ev.body.KIND}, not a checkpoint",
                          part=part, actual=ev.body.KIND)
    require_notary(ring, batch.signer_id, batch.key_id, part)
    if ref.get("event_id") != ev.event_id:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}.event_id differs from the signed event",
                          part=f"{part}.event_id", expected=ev.event_id, actual=ref.get("event_id"))
    if ref.get("topic") != ev.body.topic or ref.get("partition") != ev.body.partition:
        # topic/partition of the reference describe the partition the checkpoint is about
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part} names another partition than its signed body",
                          part=part, expected=f"{ev.body.topic}/{ev.body.partition}",
                          actual=f"{ref.get('topic')}/{ref.get('partition')}")
    return ev.body, ev.event_id, batch.signer_id, batch.key_id


def _check_keys(doc: Mapping[str, Any], ring: KeyRing, key_ids: set[str]) -> dict[str, dict[str, str]]:
    """The ``keys`` summary must describe exactly the keys the verified records used."""
    claimed = _get(doc, "keys", dict, "proof")
    derived = {}
    for kid in sorted(key_ids):
        info = ring.get(kid)
        assert info is not None  # open_record succeeded with it
        derived[kid] = _key_entry(info.owner, info.role, info.public.raw)
    if claimed != derived:
        bad = sorted(k for k in set(claimed) | set(derived) if claimed.get(k) != derived.get(k))
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the keys summary differs from the signed registrations",
                          part="keys", key_ids=bad)
    return derived


def verify_proof(doc: Mapping[str, Any], trusted_operator_keys: Mapping[str, bytes]) -> ProofReport:
    """Check a proof document offline against the trusted operator public keys (raw 32 bytes each).
    Returns what it proves; raises RejectError naming the first failed check."""
    if doc.get("format") != PROOF_FORMAT or doc.get("version") != PROOF_VERSION:
        raise RejectError(RejectCode.BAD_SCHEMA, "not a tokenledger proof of a known version", part="format",
                          expected=f"{PROOF_FORMAT} v{PROOF_VERSION}",
                          actual=f"{doc.get('format')} v{doc.get('version')}")
    regs = _get(doc, "registrations", list, "proof")
    ring = trust_registrations([_hex({"r": r}, "r", f"registrations[{i}]") for i, r in enumerate(regs)],
                               trusted_operator_keys)
    kind = doc.get("kind")
    try:
        if kind == "inclusion":
            return _verify_inclusion(doc, ring)
        if kind == "consistency":
            return _verify_consistency(doc, ring)
    except ValidationError as e:  # a size or index out of range for the tree: the proof does not hold
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"proof does not hold: {e.message}",
                          part=e.evidence.get("field", "proof"), **{k: v for k, v in e.evidence.items()
                                                                    if k != "field"}) from None
    raise RejectError(RejectCode.BAD_SCHEMA, "unknown proof kind", part="kind", actual=kind,
                      expected="inclusion | consistency")


def _verify_inclusion(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    ev_doc = _get(doc, "event", dict, "proof")
    record = _hex(ev_doc, "record", "event")
    index = _get(ev_doc, "index", int, "event")
    batch, decoded, _ = open_record(ring, record, part="event.record", only=index)
    d = decoded[0]
    raw = _hex(ev_doc, "bytes", "event")
    if raw != d.raw:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "event.bytes differ from the event in the signed batch",
                          part="event.bytes", event_id=d.event.event_id)
    if ev_doc.get("event_id") != d.event.event_id:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "event.event_id differs from the signed event",
                          part="event.event_id", expected=d.event.event_id, actual=ev_doc.get("event_id"))
    cp, cp_id, cp_signer, cp_key = _checkpoint(ring, _get(doc, "checkpoint", dict, "proof"), "checkpoint")
    if ev_doc.get("topic") != cp.topic or ev_doc.get("partition") != cp.partition:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event's partition is not the checkpoint's",
                          part="event.topic", expected=f"{cp.topic}/{cp.partition}",
                          actual=f"{ev_doc.get('topic')}/{ev_doc.get('partition')}")
    offset = _get(ev_doc, "offset", int, "event")
    if not 0 <= offset < cp.next_offset:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event's offset is past the checkpoint",
                          part="event.offset", expected=f"< {cp.next_offset}", actual=offset)
    tree_size = _get(doc, "tree_size", int, "proof")
    if tree_size != cp.tree_size:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "tree_size differs from the signed checkpoint",
                          part="tree_size", expected=cp.tree_size, actual=tree_size)
    root = _hex(doc, "root_hash", "proof", limits.HASH_BYTES)
    if root != cp.root_hash:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "root_hash differs from the signed checkpoint",
                          part="root_hash", expected=cp.root_hash.hex(), actual=root.hex())
    leaf_index = _get(doc, "leaf_index", int, "proof")
    try:
        verify_inclusion(leaf_hash(d.raw), leaf_index, cp.tree_size, _path(doc), cp.root_hash)
    except RejectError as e:
        e.evidence.setdefault("part", "path")
        e.evidence.setdefault("event_id", d.event.event_id)
        raise
    keys = _check_keys(doc, ring, {batch.key_id, cp_key})
    return ProofReport(kind="inclusion", topic=cp.topic, partition=cp.partition, tree_size=cp.tree_size,
                       root_hash=cp.root_hash.hex(), checkpoint_event_id=cp_id, checkpoint_signer=cp_signer,
                       event_id=d.event.event_id, signer_id=batch.signer_id, leaf_index=leaf_index, keys=keys)


def _verify_consistency(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    old, old_id, _, old_key = _checkpoint(ring, _get(doc, "old", dict, "proof"), "old")
    new, new_id, new_signer, new_key = _checkpoint(ring, _get(doc, "new", dict, "proof"), "new")
    if (old.topic, old.partition) != (new.topic, new.partition):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the checkpoints are about different partitions",
                          part="new", expected=f"{old.topic}/{old.partition}", actual=f"{new.topic}/{new.partition}")
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, _path(doc))
    except RejectError as e:
        e.evidence.setdefault("part", "path")
        raise
    keys = _check_keys(doc, ring, {old_key, new_key})
    return ProofReport(kind="consistency", topic=new.topic, partition=new.partition, tree_size=new.tree_size,
                       root_hash=new.root_hash.hex(), checkpoint_event_id=new_id, checkpoint_signer=new_signer,
                       old_tree_size=old.tree_size, old_root_hash=old.root_hash.hex(), old_checkpoint_event_id=old_id,
                       keys=keys)
