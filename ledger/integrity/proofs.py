"""Self-contained proof files: an event's inclusion in a signed checkpoint, and one checkpoint
extending another — built from log bytes and checked offline with nothing but operator public keys.

A proof file is one JSON document (``PROOF_FORMAT``, ``PROOF_VERSION``). Version 2 (what ``build_*``
writes) carries each signed thing as a **signed item**, the smallest evidence its envelope allows;
byte strings are standard base64. Version 1 files (hex, whole records) still verify.

Signed item, by the envelope of the batch that carried the event (ledger/wire/codec.py):

* v2 batch: ``event`` (the event's exact bytes), ``index`` (its place in the batch), ``count`` (events
  in the batch), ``path`` (RFC 9162 audit path of the event hash inside the batch), ``root`` (the
  batch's Merkle root), ``signer``, ``key_id``, ``signature`` (Ed25519 over ``DOMAIN_BATCH_V2 ||
  signer || key_id || count || root``). Size: the event plus ``32 * ceil(log2 count)`` bytes plus ~130.
* v1 batch: ``record`` (the whole signed batch, as version 1 files carry it) and ``index``.

Kinds:

``inclusion``
    ``event``: a signed item plus ``event_id``, ``topic``, ``partition``, ``offset`` (where the record
    was read; a hint, bound only by the checkpoint's ``next_offset``); ``leaf_index``, ``tree_size``,
    ``path`` (RFC 9162 inclusion path in the partition's tree; leaf data = the event's bytes);
    ``checkpoint``: a checkpoint reference (below).
``consistency``
    ``old`` and ``new`` checkpoint references of one partition and ``path`` (the RFC 9162
    consistency proof from ``old.tree_size`` to ``new.tree_size``).

A checkpoint reference is a signed item holding the ``Checkpoint`` event plus ``event_id``,
``topic``/``partition`` (the partition the checkpoint is about) and ``offset`` on the checkpoints
topic (a hint). Both kinds carry ``registrations``: signed items of the operator-signed control events,
in log order, that register — and rotate or revoke — every key the proof relies on, and the notary
grants (an operator key's registration by itself is left out: trust in it comes from the verifier's
own list). Version 1 files also carry ``root_hash`` and a ``keys`` summary; version 2 derives both.

Size of a v2 inclusion proof (JSON, base64): about ``4/3 * (E + C + 32 * (ceil(log2 B) + ceil(log2 N) + 6))``
plus ~0.8 KB of ids and names (C: the checkpoint event, ~250 B), plus each registration item (its event plus
``32 * ceil(log2 batch)`` plus ~150 bytes): E the event's bytes, B its batch's events, N the tree size.

Trust: ``verify_proof(doc, trusted_operator_keys)`` believes only the operator keys it is given.
A registration must be signed by one of them (or by an operator key registered earlier in the same
list); the event's batch by a key those records registered, unrevoked at the event's time *as far as
the included records show* (a proof cannot show the absence of a later control event: ``tokenledger
verify`` over the whole control log can); the checkpoint by a registered key of role ``processor``
whose signer holds the operator's ``notary`` grant — the ``registrations`` carry the operator-signed
``grant`` records, so a checkpoint by any other processor key (the budgets processor's, say) proves
nothing. Revocation inside a proof is judged by event time: the proof's records are lifted from the
log without their append times, so log order between the event's record and a later revocation is not
in the bundle (``tokenledger verify`` judges by log order).

Caching: the key ring a set of registrations builds (per trusted keys) and every checkpoint and
registration signature that verified are remembered per process (``TRUST_CACHE_ENTRIES``,
``SIGNATURE_CACHE_ENTRIES``), so checking many proofs against one checkpoint costs one Ed25519
verify each — the event's batch signature, never cached.

Never: no I/O, no clock, no log access. Every failure raises ``RejectError`` with a code
(CHECKPOINT_MISMATCH, BAD_SIGNATURE, UNKNOWN_KEY, NOT_PROCESSOR, NOT_OPERATOR, BAD_SCHEMA, ...)
and evidence naming the part of the proof that failed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections import OrderedDict
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
PROOF_VERSION = 2  # what build_* writes
PROOF_VERSIONS = (1, 2)  # what verify_proof reads
TRUST_CACHE_ENTRIES = 256  # key rings built from registrations, per (registrations, trusted keys), per process
SIGNATURE_CACHE_ENTRIES = 4_096  # checkpoint / registration signatures that verified, per process


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


_verified_signatures: OrderedDict[bytes, None] = OrderedDict()  # digests of (key, signature, message) that held


def _signature_holds(info: KeyInfo, signature: bytes, message: bytes, cache: bool) -> bool:
    """Ed25519 check; with ``cache``, a triple that verified once in this process is not verified again
    (checkpoints and registrations repeat across proofs; only successes are remembered)."""
    if not cache:
        return info.public.verify(signature, message)
    digest = hashlib.sha256(info.public.raw + signature + message).digest()
    if digest in _verified_signatures:
        _verified_signatures.move_to_end(digest)
        return True
    if not info.public.verify(signature, message):
        return False
    _verified_signatures[digest] = None
    if len(_verified_signatures) > SIGNATURE_CACHE_ENTRIES:
        _verified_signatures.popitem(last=False)
    return True


def open_record(ring: KeyRing, value: bytes, *, role: str | None = None, part: str = "record",
                only: int | None = None, cache: bool = False,
                ) -> tuple[codec.DecodedBatch, list[codec.DecodedEvent], KeyInfo]:
    """Decode one signed batch and check it against ``ring``: key registered, owned by the signer,
    unrevoked at the batch's latest event time, every event the signer's, the signature over the event
    hashes (either envelope version) — and, if given, the key's role. No chain check (a proof carries
    single records). ``cache``: remember a signature that verified (see ``_signature_holds``).

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
    message = codec.batch_message(batch, hashes)
    if not _signature_holds(info, batch.signature, message, cache):
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
        _apply_controls(ring, info, decoded, part)
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


def _key_entry(signer_id: str, role: str, public_key: bytes) -> dict[str, str]:
    return {"signer_id": signer_id, "role": role, "public_key": public_key.hex(),
            "fingerprint": public_key_fingerprint(public_key)}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def batch_audit_path(hashes: Sequence[bytes], index: int) -> tuple[bytes, list[bytes]]:
    """(root, RFC 9162 audit path of leaf ``index``) of the tree whose leaf hashes are ``hashes`` — a v2
    batch's tree over its event hashes. Bottom-up with an odd last node carried up (the RFC 9162 shape,
    see codec.batch_root): at each level the sibling, if the node has one, is the next path element."""
    level = list(hashes)
    path: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        nxt = [hashlib.sha256(b"\x01" + level[k] + level[k + 1]).digest() for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i >>= 1
    return level[0], path


def signed_item(record: bytes, index: int, *, batch: codec.DecodedBatch | None = None) -> dict[str, Any]:
    """The smallest evidence that event ``index`` of ``record`` was signed (module docstring, "signed item").
    Requires a decodable record holding that index (built from the log; ``verify_proof`` checks the rest)."""
    batch = batch or codec.decode_batch(record)
    if batch.version == codec.BATCH_V1:
        return {"record": _b64(record), "index": index}
    _event_hash = codec.event_hash
    root, path = batch_audit_path([_event_hash(raw) for raw in batch.events], index)
    return {"event": _b64(batch.events[index]), "index": index, "count": len(batch.events),
            "path": [_b64(h) for h in path], "root": _b64(root), "signer": batch.signer_id, "key_id": batch.key_id,
            "signature": _b64(batch.signature)}


def registration_items(records: Sequence[bytes], key_ids: set[str]) -> list[dict[str, Any]]:
    """Signed items of the control events a proof needs from ``records`` (``registration_records``'s choice, in
    log order): a v1 record whole; of a v2 record only its events about ``key_ids`` or the keys that signed the
    chosen records, and its notary grants — leaving out an operator key's registration by itself. Remembered per
    process (proofs of one partition share them); each call returns fresh dicts the caller may change."""
    items = _registration_items(tuple(records), frozenset(key_ids))
    return [{**i, "path": list(i["path"])} if "path" in i else dict(i) for i in items]


@functools.lru_cache(maxsize=TRUST_CACHE_ENTRIES)
def _registration_items(records: tuple[bytes, ...], key_ids: frozenset[str]) -> list[dict[str, Any]]:
    batches = [codec.decode_batch(r) for r in records]
    wanted = set(key_ids) | {b.key_id for b in batches}
    items: list[dict[str, Any]] = []
    for record, batch in zip(records, batches, strict=True):
        if batch.version == codec.BATCH_V1:
            items.append(signed_item(record, 0, batch=batch))
            continue
        for i, raw in enumerate(batch.events):
            body = codec.decode_event(raw).event.body
            if isinstance(body, AgentRegistered) and body.key_id == batch.key_id:
                continue  # self-registration: proves nothing the verifier's trusted keys do not
            if control_key_ids(body) & wanted or is_notary_grant(body):
                items.append(signed_item(record, i, batch=batch))
    return items


def _checkpoint_json(ref: CheckpointRef) -> dict[str, Any]:
    item = _checkpoint_item(ref)
    return {**item, "path": list(item["path"])} if "path" in item else dict(item)


@functools.lru_cache(maxsize=TRUST_CACHE_ENTRIES)
def _checkpoint_item(ref: CheckpointRef) -> dict[str, Any]:
    """Remembered per process: the proofs of one partition share their checkpoint (callers copy it)."""
    return {"event_id": ref.event_id, "topic": ref.topic, "partition": ref.partition, "offset": ref.offset,
            **signed_item(ref.record, ref.index)}


def build_inclusion_proof(*, event_id: str, topic: str, partition: int, offset: int, record: bytes,
                          leaf_index: int, tree_size: int, path: Sequence[bytes], checkpoint: CheckpointRef,
                          registrations: Sequence[bytes], index: int | None = None) -> dict[str, Any]:
    """The proof document for one event (see the module docstring); nothing here is trusted until
    ``verify_proof`` has checked it. ``index``: the event's place in ``record`` when known (else found by id)."""
    batch = codec.decode_batch(record)
    if index is None or not 0 <= index < len(batch.events):
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
        "event": {"event_id": event_id, "topic": topic, "partition": partition, "offset": offset,
                  **signed_item(record, index, batch=batch)},
        "leaf_index": leaf_index, "tree_size": tree_size, "path": [_b64(h) for h in path],
        "checkpoint": _checkpoint_json(checkpoint),
        "registrations": registration_items(registrations, {batch.key_id, cp_batch.key_id}),
    }


def build_consistency_proof(*, old: CheckpointRef, new: CheckpointRef, path: Sequence[bytes],
                            registrations: Sequence[bytes]) -> dict[str, Any]:
    """The proof document that ``new`` extends ``old`` (two checkpoints of one partition)."""
    wanted = {codec.decode_batch(old.record).key_id, codec.decode_batch(new.record).key_id}
    return {
        "format": PROOF_FORMAT, "version": PROOF_VERSION, "kind": "consistency",
        "old": _checkpoint_json(old), "new": _checkpoint_json(new), "path": [_b64(h) for h in path],
        "registrations": registration_items(registrations, wanted),
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


def _checkpoint_v1(ring: KeyRing, ref: Mapping[str, Any], part: str) -> tuple[Checkpoint, str, str, str]:
    """(checkpoint body, its event id, signer, key id) from a verified checkpoint reference."""
    if not isinstance(ref, Mapping):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part} is missing", part=part)
    record = _hex(ref, "record", part)
    index = _get(ref, "index", int, part)
    batch, decoded, _ = open_record(ring, record, role="processor", part=part, only=index)
    ev = decoded[0].event
    return _signed_checkpoint(ring, ref, ev, batch.signer_id, batch.key_id, part)


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
    """Check a proof document (version 1 or 2) offline against the trusted operator public keys (raw 32 bytes
    each). Returns what it proves; raises RejectError naming the first failed check."""
    version = doc.get("version")
    if doc.get("format") != PROOF_FORMAT or version not in PROOF_VERSIONS or isinstance(version, bool):
        raise RejectError(RejectCode.BAD_SCHEMA, "not a tokenledger proof of a known version", part="format",
                          expected=f"{PROOF_FORMAT} v{' / v'.join(map(str, PROOF_VERSIONS))}",
                          actual=f"{doc.get('format')} v{version}")
    regs = _get(doc, "registrations", list, "proof")
    kind = doc.get("kind")
    try:
        if version == 1:
            ring = trust_registrations([_hex({"r": r}, "r", f"registrations[{i}]") for i, r in enumerate(regs)],
                                       trusted_operator_keys)
            if kind == "inclusion":
                return _verify_inclusion_v1(doc, ring)
            if kind == "consistency":
                return _verify_consistency_v1(doc, ring)
        else:
            ring = trust_items(regs, trusted_operator_keys)
            if kind == "inclusion":
                return _verify_inclusion_v2(doc, ring)
            if kind == "consistency":
                return _verify_consistency_v2(doc, ring)
    except ValidationError as e:  # a size or index out of range for the tree: the proof does not hold
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"proof does not hold: {e.message}",
                          part=e.evidence.get("field", "proof"), **{k: v for k, v in e.evidence.items()
                                                                    if k != "field"}) from None
    raise RejectError(RejectCode.BAD_SCHEMA, "unknown proof kind", part="kind", actual=kind,
                      expected="inclusion | consistency")


# ---------------------------------------------------------------- version 2: signed items


def _unb64(doc: Mapping[str, Any], key: str, part: str, size: int | None = None) -> bytes:
    s = _get(doc, key, str, part)
    try:
        b = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} is not base64", part=f"{part}.{key}") from None
    if size is not None and len(b) != size:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} must be {size} bytes", part=f"{part}.{key}",
                          expected=size, actual=len(b))
    return b


def _hashes(doc: Mapping[str, Any], key: str, part: str) -> list[bytes]:
    items = _get(doc, key, list, part)
    if len(items) > MAX_PROOF_HASHES:
        raise RejectError(RejectCode.OVERSIZED, f"{part}.{key} too long", part=f"{part}.{key}",
                          expected=MAX_PROOF_HASHES, actual=len(items))
    return [_unb64({"h": h}, "h", f"{part}.{key}[{i}]", limits.HASH_BYTES) for i, h in enumerate(items)]


def open_item(ring: KeyRing, item: Any, *, part: str, role: str | None = None, cache: bool = False,
              whole: bool = False) -> tuple[str, str, list[codec.DecodedEvent], KeyInfo]:
    """Check a signed item against ``ring``: (signer, key id, its event(s), key info). A v1 item is its whole
    record (``whole``: every event of it, else the one at ``index``); a v2 item is one event, its audit path to
    the batch root, and the signature over the root — checked in that order, the signature last."""
    if not isinstance(item, Mapping):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part} is missing or not an object", part=part)
    index = _get(item, "index", int, part)
    if "record" in item:
        batch, decoded, info = open_record(ring, _unb64(item, "record", part), role=role, part=part,
                                           only=None if whole else index, cache=cache)
        return batch.signer_id, batch.key_id, decoded, info
    raw = _unb64(item, "event", part)
    count = _get(item, "count", int, part)
    signer = _get(item, "signer", str, part)
    key_id = _get(item, "key_id", str, part)
    root = _unb64(item, "root", part, limits.HASH_BYTES)
    signature = _unb64(item, "signature", part, limits.SIGNATURE_BYTES)
    path = _hashes(item, "path", part)
    if not 1 <= count <= limits.MAX_BATCH_EVENTS:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.count is outside 1..{limits.MAX_BATCH_EVENTS}",
                          part=f"{part}.count", actual=count)
    try:
        d = codec.decode_event(raw)
        info = ring.check(signer, key_id, d.event.event_time_us)
    except RejectError as e:
        e.evidence.setdefault("part", part)
        raise
    if d.event.signer_id != signer:
        raise RejectError(RejectCode.SIGNER_MISMATCH, f"{part}: event signer differs from the batch signer",
                          part=part, event_id=d.event.event_id, expected=signer, actual=d.event.signer_id)
    try:
        verify_inclusion(d.hash, index, count, path, root)
    except RejectError as e:
        e.evidence["part"] = f"{part}.path"
        raise
    except ValidationError as e:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}: the event is not in its batch: {e.message}",
                          part=f"{part}.{e.evidence.get('field', 'index')}") from None
    if not _signature_holds(info, signature, codec.batch_signing_bytes_v2(signer, key_id, count, root), cache):
        raise RejectError(RejectCode.BAD_SIGNATURE, f"{part}: batch signature does not verify", part=part,
                          signer_id=signer, key_id=key_id)
    if role is not None and info.role != role:
        code = RejectCode.NOT_PROCESSOR if role == "processor" else RejectCode.NOT_OPERATOR
        raise RejectError(code, f"{part}: signed by a key of role {info.role}, not {role}", part=part,
                          signer_id=signer, key_id=key_id, expected=role, actual=info.role)
    return signer, key_id, [d], info


_trusted_rings: OrderedDict[bytes, KeyRing] = OrderedDict()  # (registrations, trusted keys) -> the ring they build


def trust_items(items: Sequence[Any], trusted_operator_keys: Mapping[str, bytes]) -> KeyRing:
    """The key ring the registration items build from the trusted operator keys (as ``trust_registrations``
    for whole records). Remembered per process: the caller must not change the ring it gets."""
    if len(items) > MAX_REGISTRATION_RECORDS:
        raise RejectError(RejectCode.OVERSIZED, "too many registration records", part="registrations",
                          expected=MAX_REGISTRATION_RECORDS, actual=len(items))
    trusted = {key_id_of(bytes(raw)): bytes(raw) for raw in trusted_operator_keys.values()}
    try:
        cache_key = hashlib.sha256(json.dumps([items, sorted(trusted)], sort_keys=True).encode()).digest()
    except (TypeError, ValueError):
        cache_key = None  # not JSON data: no proof file holds this; the checks below name what is wrong
    if cache_key is not None and cache_key in _trusted_rings:
        _trusted_rings.move_to_end(cache_key)
        return _trusted_rings[cache_key]
    anchors: dict[str, bytes] = {}
    for i, item in enumerate(items):
        part = f"registrations[{i}]"
        if isinstance(item, Mapping) and "record" in item:
            try:
                b = codec.decode_batch(_unb64(item, "record", part))
            except RejectError as e:
                e.evidence.setdefault("part", part)
                raise
            signer, key_id = b.signer_id, b.key_id
        elif isinstance(item, Mapping):
            signer, key_id = _get(item, "signer", str, part), _get(item, "key_id", str, part)
        else:
            raise RejectError(RejectCode.BAD_SCHEMA, f"{part} is not an object", part=part)
        if key_id in trusted:
            anchors.setdefault(signer, trusted[key_id])
    ring = KeyRing(anchors)
    for i, item in enumerate(items):
        part = f"registrations[{i}]"
        _, _, decoded, info = open_item(ring, item, part=part, role="operator", cache=True, whole=True)
        _apply_controls(ring, info, decoded, part)
    if cache_key is not None:
        _trusted_rings[cache_key] = ring
        if len(_trusted_rings) > TRUST_CACHE_ENTRIES:
            _trusted_rings.popitem(last=False)
    return ring


def _apply_controls(ring: KeyRing, info: KeyInfo, decoded: Sequence[codec.DecodedEvent], part: str) -> None:
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


def _checkpoint_v2(ring: KeyRing, ref: Any, part: str) -> tuple[Checkpoint, str, str, str]:
    """(checkpoint body, its event id, signer, key id) from a verified v2 checkpoint reference."""
    signer, key_id, decoded, _ = open_item(ring, ref, part=part, role="processor", cache=True)
    ev = decoded[0].event
    return _signed_checkpoint(ring, ref, ev, signer, key_id, part)


def _derived_keys(ring: KeyRing, key_ids: set[str]) -> dict[str, dict[str, str]]:
    out = {}
    for kid in sorted(key_ids):
        info = ring.get(kid)
        assert info is not None  # a record signed with it verified
        out[kid] = _key_entry(info.owner, info.role, info.public.raw)
    return out


def _signed_checkpoint(ring: KeyRing, ref: Mapping[str, Any], ev: Any, signer: str, key_id: str,
                       part: str) -> tuple[Checkpoint, str, str, str]:
    """(checkpoint, its event id, signer, key id) once the signed event is shown to be a checkpoint by a notary,
    the one ``ref`` names, about the partition ``ref`` names (both proof versions)."""
    if not isinstance(ev.body, Checkpoint):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part} is a {ev.body.KIND}, not a checkpoint",
                          part=part, actual=ev.body.KIND)
    require_notary(ring, signer, key_id, part)
    if ref.get("event_id") != ev.event_id:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}.event_id differs from the signed event",
                          part=f"{part}.event_id", expected=ev.event_id, actual=ref.get("event_id"))
    if ref.get("topic") != ev.body.topic or ref.get("partition") != ev.body.partition:
        # topic/partition of the reference describe the partition the checkpoint is about
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part} names another partition than its signed body",
                          part=part, expected=f"{ev.body.topic}/{ev.body.partition}",
                          actual=f"{ref.get('topic')}/{ref.get('partition')}")
    return ev.body, ev.event_id, signer, key_id


def _within_checkpoint(doc: Mapping[str, Any], ev_doc: Mapping[str, Any], cp: Checkpoint) -> None:
    """The event lies in the checkpoint's partition, below its offset, in a tree of its size (both proof versions);
    a ``RejectError`` names the first field that does not."""
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


def _verify_inclusion_v2(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    ev_doc = _get(doc, "event", dict, "proof")
    signer, key_id, decoded, _ = open_item(ring, ev_doc, part="event")
    d = decoded[0]
    if ev_doc.get("event_id") != d.event.event_id:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "event.event_id differs from the signed event",
                          part="event.event_id", expected=d.event.event_id, actual=ev_doc.get("event_id"))
    cp, cp_id, cp_signer, cp_key = _checkpoint_v2(ring, _get(doc, "checkpoint", dict, "proof"), "checkpoint")
    _within_checkpoint(doc, ev_doc, cp)
    leaf_index = _get(doc, "leaf_index", int, "proof")
    try:
        verify_inclusion(leaf_hash(d.raw), leaf_index, cp.tree_size, _hashes(doc, "path", "proof"), cp.root_hash)
    except RejectError as e:
        e.evidence.setdefault("part", "path")
        e.evidence.setdefault("event_id", d.event.event_id)
        raise
    return ProofReport(kind="inclusion", topic=cp.topic, partition=cp.partition, tree_size=cp.tree_size,
                       root_hash=cp.root_hash.hex(), checkpoint_event_id=cp_id, checkpoint_signer=cp_signer,
                       event_id=d.event.event_id, signer_id=signer, leaf_index=leaf_index,
                       keys=_derived_keys(ring, {key_id, cp_key}))


def _verify_consistency_v2(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    old, old_id, _, old_key = _checkpoint_v2(ring, _get(doc, "old", dict, "proof"), "old")
    new, new_id, new_signer, new_key = _checkpoint_v2(ring, _get(doc, "new", dict, "proof"), "new")
    if (old.topic, old.partition) != (new.topic, new.partition):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the checkpoints are about different partitions",
                          part="new", expected=f"{old.topic}/{old.partition}", actual=f"{new.topic}/{new.partition}")
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, _hashes(doc, "path", "proof"))
    except RejectError as e:
        e.evidence.setdefault("part", "path")
        raise
    return ProofReport(kind="consistency", topic=new.topic, partition=new.partition, tree_size=new.tree_size,
                       root_hash=new.root_hash.hex(), checkpoint_event_id=new_id, checkpoint_signer=new_signer,
                       old_tree_size=old.tree_size, old_root_hash=old.root_hash.hex(), old_checkpoint_event_id=old_id,
                       keys=_derived_keys(ring, {old_key, new_key}))


# ---------------------------------------------------------------- version 1: whole records, hex


def _verify_inclusion_v1(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
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
    cp, cp_id, cp_signer, cp_key = _checkpoint_v1(ring, _get(doc, "checkpoint", dict, "proof"), "checkpoint")
    _within_checkpoint(doc, ev_doc, cp)
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


def _verify_consistency_v1(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    old, old_id, _, old_key = _checkpoint_v1(ring, _get(doc, "old", dict, "proof"), "old")
    new, new_id, new_signer, new_key = _checkpoint_v1(ring, _get(doc, "new", dict, "proof"), "new")
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
