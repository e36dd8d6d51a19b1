"""Self-contained proof files: events' inclusion in signed checkpoints, and one checkpoint extending
another — built from log bytes and checked offline with nothing but operator public keys.

A proof file is one JSON document (``PROOF_FORMAT``, ``PROOF_VERSION``). Version 3 (what ``build_*`` writes)
carries each signed thing as a **signed item**, the smallest evidence its envelope allows, and may prove many
events at once, sharing their checkpoints and registrations; byte strings are standard base64, and a path is its
32-byte hashes back to back in one string. Version 2 (one event; items with their batch root and signer written
down, paths as lists) and version 1 (hex, whole records) files still verify.

Signed item, by the envelope of the batch that carried the event (ledger/wire/codec.py):

* v2 batch: ``event`` (the event's exact bytes), ``index`` (its place in the batch), ``count`` (events in the
  batch), ``batch_path`` (RFC 9162 audit path of the event hash inside the batch), ``key_id`` and ``signature``
  (Ed25519 over ``DOMAIN_BATCH_V2 || signer || key_id || count || root``). The signer is the event's own; the
  root is what the path leads to (a wrong path, index or count gives another root, which the signature refuses).
  Size: the event plus ``32 * ceil(log2 count)`` bytes plus 64, base64.
* v1 batch: ``record`` (the whole signed batch) and ``index``.

Kinds:

``inclusion``
    ``events``: 1..``MAX_PROOF_FILE_EVENTS`` entries, each a signed item plus ``event_id``, ``offset`` (where the
    record was read; a hint, bound only by the checkpoint's ``next_offset``), ``checkpoint`` (an index into
    ``checkpoints``), ``leaf_index`` and ``path`` (RFC 9162 inclusion path in the partition's tree at the
    checkpoint's size; leaf data = the event's bytes). ``checkpoints``: the checkpoints the entries use, each a
    signed item holding a ``Checkpoint`` event (its topic, partition, tree size and root are in its signed body)
    plus ``event_id`` and ``offset`` on the checkpoints topic (a hint).
``consistency``
    ``old`` and ``new`` checkpoints of one partition (as above) and ``path`` (the RFC 9162 consistency proof
    from ``old``'s tree size to ``new``'s).

Both kinds carry ``registrations``: signed items of the operator-signed control events, in log order, that
register — and rotate or revoke — every key the proof relies on, and the notary grants (an operator key's
registration by itself is left out: trust in it comes from the verifier's own list).

Size of an inclusion entry (JSON): about ``4/3 * (E + 64 + 32 * (ceil(log2 B) + ceil(log2 N)))`` plus ~250 B of
names and numbers, E the event's bytes, B its batch's events, N the tree size: ~1.8 KB for a 300 B event in a
100-event batch at a million leaves. Once per file: each checkpoint (~0.6 KB) and the registrations (~0.5 KB each,
typically three: the agent's key, the notary's key, the notary grant).

Trust: ``verify_proofs(doc, trusted_operator_keys)`` believes only the operator keys it is given.
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
from ledger.integrity.merkle import leaf_hash, root_from_inclusion, verify_consistency, verify_inclusion
from ledger.limits import (
    MAX_PROOF_FILE_BYTES,
    MAX_PROOF_FILE_CHECKPOINTS,
    MAX_PROOF_FILE_EVENTS,
    MAX_PROOF_HASHES,
    MAX_REGISTRATION_RECORDS,
)
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Checkpoint, Grant, KeyRevoked, KeyRotated
from ledger.wire.vocab import Capability

PROOF_FORMAT = "tokenledger-proof"
PROOF_VERSION = 3  # what build_* writes
PROOF_VERSIONS = (1, 2, 3)  # what verify_proofs reads
TRUST_CACHE_ENTRIES = 256  # key rings built from registrations, per (registrations, trusted keys), per process
SIGNATURE_CACHE_ENTRIES = 4_096  # checkpoint / registration signatures that verified, per process
BATCH_TREE_CACHE_ENTRIES = 64  # decoded batches and their trees kept while building proofs, per process


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


def _levels(hashes: tuple[bytes, ...]) -> list[list[bytes]]:
    """Every level of a batch's tree (a v2 envelope's tree over its event hashes), leaves first, root last: bottom-up
    with an odd last node carried up (the RFC 9162 shape, see codec.batch_root)."""
    levels = [list(hashes)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        nxt = [hashlib.sha256(b"\x01" + level[k] + level[k + 1]).digest() for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        levels.append(nxt)
    return levels


def _audit_path(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    path: list[bytes] = []
    i = index
    for level in levels[:-1]:
        if (i ^ 1) < len(level):
            path.append(level[i ^ 1])
        i >>= 1
    return path


@functools.lru_cache(maxsize=BATCH_TREE_CACHE_ENTRIES)
def _batch_levels(record: bytes) -> tuple[codec.DecodedBatch, list[list[bytes]]]:
    """A v2 record decoded and the levels of its batch tree: the proofs of many events of one batch (a proof
    file of a run, say) hash its events once."""
    batch = codec.decode_batch(record)
    return batch, _levels(tuple(codec.event_hash(raw) for raw in batch.events))


def signed_item(record: bytes, index: int) -> dict[str, Any]:
    """The smallest evidence that event ``index`` of ``record`` was signed (module docstring, "signed item"),
    in the shape of proof format v3. Requires a decodable record holding that index (built from the log;
    ``verify_proofs`` checks the rest)."""
    batch, levels = _batch_levels(record)
    if batch.version == codec.BATCH_V1:
        return {"record": _b64(record), "index": index}
    return {"event": _b64(batch.events[index]), "index": index, "count": len(batch.events),
            "batch_path": _b64(b"".join(_audit_path(levels, index))), "key_id": batch.key_id,
            "signature": _b64(batch.signature)}


def registration_items(records: Sequence[bytes], key_ids: set[str]) -> list[dict[str, Any]]:
    """Signed items of the control events a proof needs from ``records`` (``registration_records``'s choice, in
    log order): a v1 record whole; of a v2 record only its events about ``key_ids`` or the keys that signed the
    chosen records, and its notary grants — leaving out an operator key's registration by itself. Remembered per
    process (proofs of one partition share them); each call returns fresh dicts the caller may change."""
    return [dict(i) for i in _registration_items(tuple(records), frozenset(key_ids))]


@functools.lru_cache(maxsize=TRUST_CACHE_ENTRIES)
def _registration_items(records: tuple[bytes, ...], key_ids: frozenset[str]) -> list[dict[str, Any]]:
    batches = [codec.decode_batch(r) for r in records]
    wanted = set(key_ids) | {b.key_id for b in batches}
    items: list[dict[str, Any]] = []
    for record, batch in zip(records, batches, strict=True):
        if batch.version == codec.BATCH_V1:
            items.append(signed_item(record, 0))
            continue
        for i, raw in enumerate(batch.events):
            body = codec.decode_event(raw).event.body
            if isinstance(body, AgentRegistered) and body.key_id == batch.key_id:
                continue  # self-registration: proves nothing the verifier's trusted keys do not
            if control_key_ids(body) & wanted or is_notary_grant(body):
                items.append(signed_item(record, i))
    return items


@functools.lru_cache(maxsize=TRUST_CACHE_ENTRIES)
def _checkpoint_item(ref: CheckpointRef) -> dict[str, Any]:
    """Remembered per process: the proofs of one partition share their checkpoint (callers copy it)."""
    return {"event_id": ref.event_id, "offset": ref.offset, **signed_item(ref.record, ref.index)}


@dataclass(frozen=True)
class EventEvidence:
    """What the log and the notary's index give for one event to prove: where its record is, its leaf and the
    inclusion path of that leaf in ``checkpoint``'s tree. ``index``: the event's place in ``record`` when known
    (else found by id)."""

    event_id: str
    topic: str
    partition: int
    offset: int
    record: bytes
    leaf_index: int
    path: tuple[bytes, ...]
    checkpoint: CheckpointRef
    index: int | None = None


def build_inclusion_proofs(events: Sequence[EventEvidence], registrations: Sequence[bytes]) -> dict[str, Any]:
    """One proof file (format v3) for every event in ``events``: each event's entry, the checkpoints they refer to
    (once each) and the registrations of every key involved (once). Nothing here is trusted until
    ``verify_proofs`` has checked it."""
    if not 1 <= len(events) <= MAX_PROOF_FILE_EVENTS:
        raise ValidationError("events", len(events), f"a proof file holds 1..{MAX_PROOF_FILE_EVENTS:,} events",
                              hint="split the ids over several proof files")
    checkpoints: dict[CheckpointRef, int] = {}
    key_ids: set[str] = set()
    entries = []
    for ev in events:
        batch, _ = _batch_levels(ev.record)
        index = _event_index(ev, batch)
        cp = ev.checkpoint
        if cp not in checkpoints:
            cp_batch, _ = _batch_levels(cp.record)
            body = codec.decode_event(cp_batch.events[cp.index]).event.body
            if not isinstance(body, Checkpoint) or (body.topic, body.partition) != (ev.topic, ev.partition):
                raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the checkpoint reference holds no checkpoint of "
                                  "the event's partition", event_id=cp.event_id, actual=body.KIND,
                                  expected=f"checkpoint of {ev.topic}/{ev.partition}")
            checkpoints[cp] = len(checkpoints)
            key_ids.add(cp_batch.key_id)
        key_ids.add(batch.key_id)
        entries.append({"event_id": ev.event_id, "offset": ev.offset, "checkpoint": checkpoints[cp],
                        "leaf_index": ev.leaf_index, "path": _b64(b"".join(ev.path)),
                        **signed_item(ev.record, index)})
    return {"format": PROOF_FORMAT, "version": PROOF_VERSION, "kind": "inclusion", "events": entries,
            "checkpoints": [_checkpoint_item(cp) for cp in checkpoints],
            "registrations": registration_items(registrations, key_ids)}


def _event_index(ev: EventEvidence, batch: codec.DecodedBatch) -> int:
    if ev.index is not None and 0 <= ev.index < len(batch.events):
        return ev.index
    # the id is in each event's first bytes: decode only the candidates
    tag = ev.event_id.encode()
    for i, raw in enumerate(batch.events):
        if tag in raw[:64] and codec.decode_event(raw).event.event_id == ev.event_id:
            return i
    raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the event is not in the record at its offset",
                      event_id=ev.event_id, topic=ev.topic, partition=ev.partition, offset=ev.offset)


def build_inclusion_proof(*, event_id: str, topic: str, partition: int, offset: int, record: bytes,
                          leaf_index: int, tree_size: int, path: Sequence[bytes], checkpoint: CheckpointRef,
                          registrations: Sequence[bytes], index: int | None = None) -> dict[str, Any]:
    """The proof file of one event (``build_inclusion_proofs`` of one); ``tree_size`` is the checkpoint's."""
    del tree_size  # the signed checkpoint carries it
    return build_inclusion_proofs([EventEvidence(event_id, topic, partition, offset, record, leaf_index, tuple(path),
                                                 checkpoint, index)], registrations)


def build_consistency_proof(*, old: CheckpointRef, new: CheckpointRef, path: Sequence[bytes],
                            registrations: Sequence[bytes]) -> dict[str, Any]:
    """The proof document that ``new`` extends ``old`` (two checkpoints of one partition)."""
    wanted = {codec.decode_batch(old.record).key_id, codec.decode_batch(new.record).key_id}
    return {
        "format": PROOF_FORMAT, "version": PROOF_VERSION, "kind": "consistency",
        "old": dict(_checkpoint_item(old)), "new": dict(_checkpoint_item(new)), "path": _b64(b"".join(path)),
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


def verify_proofs(doc: Mapping[str, Any], trusted_operator_keys: Mapping[str, bytes]) -> list[ProofReport]:
    """Check a proof document (version 1, 2 or 3) offline against the trusted operator public keys (raw 32 bytes
    each). Returns what it proves: one report per event of an inclusion proof file (version 3 files hold one or
    more), one for a consistency proof. Raises RejectError naming the first failed check."""
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
                return [_verify_inclusion_v1(doc, ring)]
            if kind == "consistency":
                return [_verify_consistency_v1(doc, ring)]
        else:
            ring = trust_items(regs, trusted_operator_keys)
            if kind == "inclusion":
                return [_verify_inclusion_v2(doc, ring)] if version == 2 else _verify_inclusion_v3(doc, ring)
            if kind == "consistency":
                return [_verify_consistency_v2(doc, ring) if version == 2 else _verify_consistency_v3(doc, ring)]
    except ValidationError as e:  # a size or index out of range for the tree: the proof does not hold
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"proof does not hold: {e.message}",
                          part=e.evidence.get("field", "proof"), **{k: v for k, v in e.evidence.items()
                                                                    if k != "field"}) from None
    raise RejectError(RejectCode.BAD_SCHEMA, "unknown proof kind", part="kind", actual=kind,
                      expected="inclusion | consistency")


def verify_proof(doc: Mapping[str, Any], trusted_operator_keys: Mapping[str, bytes]) -> ProofReport:
    """``verify_proofs`` of a document that proves one thing (one event, or one consistency); a file of several
    events is refused here (check it with ``verify_proofs``)."""
    reports = verify_proofs(doc, trusted_operator_keys)
    if len(reports) != 1:
        raise RejectError(RejectCode.BAD_SCHEMA, f"the proof file proves {len(reports)} events, not one",
                          part="events", expected=1, actual=len(reports))
    return reports[0]


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
    return _open_event_item(ring, item, index, part=part, role=role, cache=cache)


def _open_event_item(ring: KeyRing, item: Mapping[str, Any], index: int, *, part: str, role: str | None,
                     cache: bool) -> tuple[str, str, list[codec.DecodedEvent], KeyInfo]:
    """A v2 or v3 signed item: one event, its audit path inside its batch, the signature over the batch root. A v3
    item (``batch_path``) writes neither the signer (the event's own) nor the root (what the path leads to: a wrong
    path, index or count gives another root, which the signature refuses); a v2 item writes both, and they must
    agree with the event and the path."""
    v3 = "batch_path" in item
    raw = _unb64(item, "event", part)
    count = _get(item, "count", int, part)
    claimed = None if v3 else _get(item, "signer", str, part)
    key_id = _get(item, "key_id", str, part)
    written_root = None if v3 else _unb64(item, "root", part, limits.HASH_BYTES)
    signature = _unb64(item, "signature", part, limits.SIGNATURE_BYTES)
    path_key = "batch_path" if v3 else "path"
    path = _hash_run(item, path_key, part) if v3 else _hashes(item, path_key, part)
    _require_count(count, part)
    try:
        d = codec.decode_event(raw)
        signer = d.event.signer_id if claimed is None else claimed
        info = ring.check(signer, key_id, d.event.event_time_us)
    except RejectError as e:
        e.evidence.setdefault("part", part)
        raise
    if d.event.signer_id != signer:
        raise RejectError(RejectCode.SIGNER_MISMATCH, f"{part}: event signer differs from the batch signer",
                          part=part, event_id=d.event.event_id, expected=signer, actual=d.event.signer_id)
    try:
        root = root_from_inclusion(d.hash, index, count, path)
    except RejectError as e:
        e.evidence["part"] = f"{part}.{path_key}"
        raise
    except ValidationError as e:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}: the event is not in its batch: {e.message}",
                          part=f"{part}.{e.evidence.get('field', 'index')}") from None
    if written_root is not None and root != written_root:
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}: the audit path does not lead to the batch root",
                          part=f"{part}.path", expected=written_root.hex(), actual=root.hex())
    _require_batch_signature(info, signature, signer, key_id, count, root, cache=cache, role=role, part=part)
    return signer, key_id, [d], info


def _require_count(count: int, part: str) -> None:
    if not 1 <= count <= limits.MAX_BATCH_EVENTS:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.count is outside 1..{limits.MAX_BATCH_EVENTS}",
                          part=f"{part}.count", actual=count)


def _require_batch_signature(info: KeyInfo, signature: bytes, signer: str, key_id: str, count: int, root: bytes, *,
                             cache: bool, role: str | None, part: str) -> None:
    """The v2 envelope's signature over (signer, key id, count, root) holds, by a key of ``role`` if one is asked."""
    if not _signature_holds(info, signature, codec.batch_signing_bytes_v2(signer, key_id, count, root), cache):
        raise RejectError(RejectCode.BAD_SIGNATURE, f"{part}: batch signature does not verify", part=part,
                          signer_id=signer, key_id=key_id)
    if role is not None and info.role != role:
        code = RejectCode.NOT_PROCESSOR if role == "processor" else RejectCode.NOT_OPERATOR
        raise RejectError(code, f"{part}: signed by a key of role {info.role}, not {role}", part=part,
                          signer_id=signer, key_id=key_id, expected=role, actual=info.role)


def _hash_run(doc: Mapping[str, Any], key: str, part: str) -> list[bytes]:
    """A v3 path: its hashes back to back in one base64 string."""
    b = _unb64(doc, key, part)
    if len(b) % limits.HASH_BYTES:
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.{key} is not a whole number of {limits.HASH_BYTES}-byte "
                          "hashes", part=f"{part}.{key}", actual=len(b))
    if len(b) > MAX_PROOF_HASHES * limits.HASH_BYTES:
        raise RejectError(RejectCode.OVERSIZED, f"{part}.{key} too long", part=f"{part}.{key}",
                          expected=MAX_PROOF_HASHES, actual=len(b) // limits.HASH_BYTES)
    return [b[i:i + limits.HASH_BYTES] for i in range(0, len(b), limits.HASH_BYTES)]


def _item_signer(item: Any, part: str) -> tuple[str, str]:
    """(signer, key id) a signed item claims, before anything is checked (to find the trusted anchors)."""
    if not isinstance(item, Mapping):
        raise RejectError(RejectCode.BAD_SCHEMA, f"{part} is not an object", part=part)
    try:
        if "record" in item:
            b = codec.decode_batch(_unb64(item, "record", part))
            return b.signer_id, b.key_id
        if "batch_path" in item:
            return (codec.decode_event(_unb64(item, "event", part)).event.signer_id,
                    _get(item, "key_id", str, part))
    except RejectError as e:
        e.evidence.setdefault("part", part)
        raise
    return _get(item, "signer", str, part), _get(item, "key_id", str, part)


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
        signer, key_id = _item_signer(item, f"registrations[{i}]")
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
    return _consistency(ring, _checkpoint_v2(ring, _get(doc, "old", dict, "proof"), "old"),
                        _checkpoint_v2(ring, _get(doc, "new", dict, "proof"), "new"), _hashes(doc, "path", "proof"))


def _consistency(ring: KeyRing, old_cp: tuple[Checkpoint, str, str, str], new_cp: tuple[Checkpoint, str, str, str],
                 path: list[bytes]) -> ProofReport:
    """The report that the verified checkpoint ``new_cp`` extends ``old_cp`` along ``path`` (proof versions 2, 3)."""
    old, old_id, _, old_key = old_cp
    new, new_id, new_signer, new_key = new_cp
    if (old.topic, old.partition) != (new.topic, new.partition):
        raise RejectError(RejectCode.CHECKPOINT_MISMATCH, "the checkpoints are about different partitions",
                          part="new", expected=f"{old.topic}/{old.partition}", actual=f"{new.topic}/{new.partition}")
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, path)
    except RejectError as e:
        e.evidence.setdefault("part", "path")
        raise
    return ProofReport(kind="consistency", topic=new.topic, partition=new.partition, tree_size=new.tree_size,
                       root_hash=new.root_hash.hex(), checkpoint_event_id=new_id, checkpoint_signer=new_signer,
                       old_tree_size=old.tree_size, old_root_hash=old.root_hash.hex(), old_checkpoint_event_id=old_id,
                       keys=_derived_keys(ring, {old_key, new_key}))


# ---------------------------------------------------------------- version 3: shared checkpoints, one or more events


def _checkpoint_v3(ring: KeyRing, ref: Any, part: str) -> tuple[Checkpoint, str, str, str]:
    """(checkpoint body, its event id, signer, key id) from a verified v3 checkpoint item (the partition it is
    about is its signed body's: the item names none)."""
    signer, key_id, decoded, _ = open_item(ring, ref, part=part, role="processor", cache=True)
    ev = decoded[0].event
    return _signed_checkpoint(ring, {**ref, "topic": getattr(ev.body, "topic", None),
                                     "partition": getattr(ev.body, "partition", None)}, ev, signer, key_id, part)


def _verify_inclusion_v3(doc: Mapping[str, Any], ring: KeyRing) -> list[ProofReport]:
    events = _get(doc, "events", list, "proof")
    cp_items = _get(doc, "checkpoints", list, "proof")
    for key, items, most in (("events", events, MAX_PROOF_FILE_EVENTS), ("checkpoints", cp_items,
                                                                         MAX_PROOF_FILE_CHECKPOINTS)):
        if not 1 <= len(items) <= most:
            raise RejectError(RejectCode.BAD_SCHEMA if not items else RejectCode.OVERSIZED,
                              f"proof.{key} must hold 1..{most:,} entries", part=key, actual=len(items))
    checkpoints = [_checkpoint_v3(ring, c, f"checkpoints[{i}]") for i, c in enumerate(cp_items)]
    reports = []
    for i, ev_doc in enumerate(events):
        part = f"events[{i}]"
        signer, key_id, decoded, _ = open_item(ring, ev_doc, part=part)
        d = decoded[0]
        if ev_doc.get("event_id") != d.event.event_id:
            raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}.event_id differs from the signed event",
                              part=f"{part}.event_id", expected=d.event.event_id, actual=ev_doc.get("event_id"))
        which = _get(ev_doc, "checkpoint", int, part)
        if not 0 <= which < len(checkpoints):
            raise RejectError(RejectCode.BAD_SCHEMA, f"{part}.checkpoint names no checkpoint of the file",
                              part=f"{part}.checkpoint", expected=f"0..{len(checkpoints) - 1}", actual=which)
        cp, cp_id, cp_signer, cp_key = checkpoints[which]
        offset = _get(ev_doc, "offset", int, part)
        if not 0 <= offset < cp.next_offset:
            raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}: the event's offset is past the checkpoint",
                              part=f"{part}.offset", expected=f"< {cp.next_offset}", actual=offset)
        leaf_index = _get(ev_doc, "leaf_index", int, part)
        try:
            verify_inclusion(leaf_hash(d.raw), leaf_index, cp.tree_size, _hash_run(ev_doc, "path", part),
                             cp.root_hash)
        except RejectError as e:
            e.evidence["part"] = f"{part}.path"
            e.evidence.setdefault("event_id", d.event.event_id)
            raise
        except ValidationError as e:
            raise RejectError(RejectCode.CHECKPOINT_MISMATCH, f"{part}: proof does not hold: {e.message}",
                              part=f"{part}.{e.evidence.get('field', 'leaf_index')}",
                              event_id=d.event.event_id) from None
        reports.append(ProofReport(kind="inclusion", topic=cp.topic, partition=cp.partition,
                                   tree_size=cp.tree_size, root_hash=cp.root_hash.hex(), checkpoint_event_id=cp_id,
                                   checkpoint_signer=cp_signer, event_id=d.event.event_id, signer_id=signer,
                                   leaf_index=leaf_index, keys=_derived_keys(ring, {key_id, cp_key})))
    return reports


def _verify_consistency_v3(doc: Mapping[str, Any], ring: KeyRing) -> ProofReport:
    return _consistency(ring, _checkpoint_v3(ring, _get(doc, "old", dict, "proof"), "old"),
                        _checkpoint_v3(ring, _get(doc, "new", dict, "proof"), "new"), _hash_run(doc, "path", "proof"))


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
