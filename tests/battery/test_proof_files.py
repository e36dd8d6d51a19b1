"""Battery, class "proof files": `tokenledger verify-proof` and ``verify_proof`` on bad proof files.

One home (module-scoped) with a small workload, a notary checkpoint and one good inclusion proof of a
middle event, in every file version: v1 (hex, whole records: the cases below ``DOC_CASES``), v2 (base64,
signed items: ``V2_DOC_CASES``) and v3 (shared checkpoints, paths as one string: ``V3_DOC_CASES``). Each case damages the file (not JSON, truncated, the wrong JSON type) or one field of
the document (wrong type, wrong length, out of range, a flipped hash). Asserted: ``check_proof``
raises ``RejectError`` with the expected reject code and names the part of the proof that failed
(its ``part`` evidence, where the check has one); the CLI exits 1 showing the code; the log is
unchanged (checking a proof is read-only). Unreadable files are bad input (exit 2).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import RejectCode, RejectError
from ledger.integrity.keys import SigningKey
from ledger.sdk.home import Home
from ledger.testing.homes import fill, make_home
from processors.services.proofs import check_proof, checkpoint_now, notary_leaves, prove_event
from processors.testing.proofs import proof_as_v1, proof_as_v2

from .support import cli, log_records

C = RejectCode


@dataclass
class Proof:
    home: Home
    doc: dict[str, Any]  # version 1
    v2: dict[str, Any]  # the same proof in version 2
    v3: dict[str, Any]  # the same proof as `prove` writes it now


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Proof:
    h = make_home(tmp_path_factory.mktemp("battery-proof") / "home", agents=())
    fill(h, tasks=2, batch_size=4)
    with h.open_log() as lg:
        checkpoint_now(h, lg)
        with notary_leaves(h) as q:
            ids = [r[0] for r in q("SELECT event_id FROM merkle_leaves WHERE topic = ? ORDER BY leaf_index",
                                   (h.topic,))]
        doc = prove_event(h, lg, ids[len(ids) // 2])
    assert doc["version"] == 3
    v2 = proof_as_v2(doc)
    assert 0 < v2["leaf_index"] < v2["tree_size"] - 1 and len(v2["path"]) >= 2
    v1 = proof_as_v1(h, v2)
    for good in (doc, v2, v1):
        check_proof(json.dumps(good).encode(), h.anchors())  # the good proof holds
    return Proof(h, v1, v2, doc)


def flip(hex_text: str, at: int | None = None) -> str:
    b = bytearray(bytes.fromhex(hex_text))
    b[len(b) // 2 if at is None else at] ^= 0x01
    return b.hex()


def flip_sig(record_hex: str) -> str:
    """Flip the last signature byte of a record (a v2 record ends with its envelope version after it)."""
    from ledger.wire import codec

    return flip(record_hex, -1 if codec.decode_batch(bytes.fromhex(record_hex)).version == codec.BATCH_V1 else -2)


Doc = dict[str, Any]


def setp(path: str, fn: Callable[[Any], Any]) -> Callable[[Doc], Doc]:
    """Set the field at dotted ``path`` (list indexes as numbers) to ``fn(old value)``."""
    def apply(doc: Doc) -> Doc:
        *parents, leaf = path.split(".")
        d: Any = doc
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if isinstance(d, list):
            d[int(leaf)] = fn(d[int(leaf)])
        else:
            d[leaf] = fn(d[leaf])
        return doc
    return apply


def dropp(key: str) -> Callable[[Doc], Doc]:
    def apply(doc: Doc) -> Doc:
        del doc[key]
        return doc
    return apply


def text(data: bytes | Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return data if callable(data) else (lambda _good: data)


# (damage: a function of the good document, or of the good file's bytes; reject codes; part named or None)
FILE_CASES = [
    pytest.param(text(b""), {C.TRUNCATED}, "file", id="empty"),
    pytest.param(text(b"\x00\xff\xfe garbage \x80"), {C.BAD_SCHEMA}, "file", id="binary"),
    pytest.param(text(lambda good: good[: len(good) // 2]), {C.TRUNCATED}, "file", id="truncated-half"),
    pytest.param(text(lambda good: good[:-1]), {C.TRUNCATED}, "file", id="truncated-last-brace"),
    pytest.param(text(lambda good: good + b"}"), {C.BAD_SCHEMA}, "file", id="trailing-brace"),
    pytest.param(text(b"[]"), {C.BAD_SCHEMA}, "file", id="json-array"),
    pytest.param(text(b"null"), {C.BAD_SCHEMA}, "file", id="json-null"),
    pytest.param(text(b"42"), {C.BAD_SCHEMA}, "file", id="json-number"),
    pytest.param(text(b'"proof"'), {C.BAD_SCHEMA}, "file", id="json-string"),
    pytest.param(text(b"[" * 100_000 + b"]" * 100_000), {C.BAD_SCHEMA}, "file", id="absurd-nesting"),
    pytest.param(text(b'{"format": "\xff\xfe"}'), {C.BAD_SCHEMA}, "file", id="not-utf8"),
    pytest.param(text(b"{}"), {C.BAD_SCHEMA}, "format", id="empty-object"),
]

DOC_CASES = [
    pytest.param(setp("format", lambda v: "something-else"), {C.BAD_SCHEMA}, "format", id="format"),
    pytest.param(setp("version", lambda v: str(v)), {C.BAD_SCHEMA}, "format", id="version-as-text"),
    pytest.param(setp("version", lambda v: 4), {C.BAD_SCHEMA}, "format", id="future-version"),
    pytest.param(setp("kind", lambda v: "teleport"), {C.BAD_SCHEMA}, "kind", id="kind-unknown"),
    pytest.param(setp("registrations", lambda v: "none"), {C.BAD_SCHEMA}, "proof.registrations",
                 id="registrations-not-a-list"),
    pytest.param(setp("registrations.0", lambda v: "zz"), {C.BAD_SCHEMA}, "registrations[0]",
                 id="registration-not-hex"),
    pytest.param(setp("registrations", lambda v: []), {C.UNKNOWN_KEY}, None, id="registrations-dropped"),
    pytest.param(setp("registrations.0", flip_sig), {C.BAD_SIGNATURE}, None,
                 id="registration-signature-flipped"),
    pytest.param(dropp("event"), {C.BAD_SCHEMA}, "proof.event", id="event-missing"),
    pytest.param(setp("event", lambda v: [v]), {C.BAD_SCHEMA}, "proof.event", id="event-a-list"),
    pytest.param(setp("event.record", lambda v: "not hex"), {C.BAD_SCHEMA}, "event.record", id="record-not-hex"),
    pytest.param(setp("event.record", lambda v: v[:20]), {C.TRUNCATED, C.BAD_SCHEMA}, None, id="record-truncated"),
    pytest.param(setp("event.record", flip_sig), {C.BAD_SIGNATURE}, None,
                 id="record-signature-flipped"),
    pytest.param(setp("event.index", lambda v: "0"), {C.BAD_SCHEMA}, "event.index", id="index-as-text"),
    pytest.param(setp("event.index", lambda v: True), {C.BAD_SCHEMA}, "event.index", id="index-bool"),
    pytest.param(setp("event.bytes", flip), {C.CHECKPOINT_MISMATCH}, None, id="event-bytes-flipped"),
    pytest.param(setp("event.event_id", lambda v: "0" * 32), {C.CHECKPOINT_MISMATCH}, None, id="event-id-other"),
    pytest.param(setp("leaf_index", lambda v: str(v)), {C.BAD_SCHEMA}, None, id="leaf-index-as-text"),
    pytest.param(setp("leaf_index", lambda v: -1), {C.CHECKPOINT_MISMATCH}, None, id="leaf-index-negative"),
    pytest.param(setp("leaf_index", lambda v: v + 1), {C.CHECKPOINT_MISMATCH}, None, id="leaf-index-plus-one"),
    pytest.param(lambda d: d | {"leaf_index": d["tree_size"]}, {C.CHECKPOINT_MISMATCH}, None,
                 id="leaf-index-beyond-tree"),
    pytest.param(setp("tree_size", lambda v: 0), {C.CHECKPOINT_MISMATCH}, None, id="tree-size-zero"),
    pytest.param(setp("tree_size", lambda v: 2**70), {C.CHECKPOINT_MISMATCH}, None, id="tree-size-2-to-70"),
    pytest.param(setp("tree_size", lambda v: 1.5), {C.BAD_SCHEMA}, None, id="tree-size-float"),
    pytest.param(setp("root_hash", flip), {C.CHECKPOINT_MISMATCH}, None, id="root-flipped"),
    pytest.param(setp("root_hash", lambda v: v[:-2]), {C.BAD_SCHEMA, C.CHECKPOINT_MISMATCH}, None, id="root-short"),
    pytest.param(setp("path", lambda v: "abc"), {C.BAD_SCHEMA}, "proof.path", id="path-not-a-list"),
    pytest.param(setp("path.0", lambda v: "zz" * 32), {C.BAD_SCHEMA}, "path[0]", id="path-element-not-hex"),
    pytest.param(setp("path.0", lambda v: v[:-2]), {C.BAD_SCHEMA}, "path[0]", id="path-element-31-bytes"),
    pytest.param(setp("path.0", flip), {C.CHECKPOINT_MISMATCH}, None, id="path-element-flipped"),
    pytest.param(setp("path", lambda v: v[:-1]), {C.CHECKPOINT_MISMATCH}, None, id="path-element-dropped"),
    pytest.param(setp("path", lambda v: [*v, v[0]]), {C.CHECKPOINT_MISMATCH}, None, id="path-element-added"),
    pytest.param(setp("path", lambda v: ["00" * 32] * 65), {C.OVERSIZED}, "path", id="path-65-hashes"),
    pytest.param(setp("path", lambda v: list(reversed(v))), {C.CHECKPOINT_MISMATCH}, None, id="path-reversed"),
    pytest.param(dropp("checkpoint"), {C.BAD_SCHEMA}, "proof.checkpoint", id="checkpoint-missing"),
    pytest.param(setp("checkpoint.record", lambda v: "00ff"), {C.TRUNCATED, C.BAD_SCHEMA}, None,
                 id="checkpoint-record-garbage"),
    pytest.param(setp("checkpoint.record", flip_sig), {C.BAD_SIGNATURE}, None,
                 id="checkpoint-signature-flipped"),
    pytest.param(setp("checkpoint.index", lambda v: "0"), {C.BAD_SCHEMA}, "checkpoint.index",
                 id="checkpoint-index-as-text"),
    pytest.param(lambda d: setp("keys." + sorted(d["keys"])[0] + ".fingerprint", flip)(d),
                 {C.CHECKPOINT_MISMATCH}, None, id="key-fingerprint-flipped"),
]


def b64flip(text: str, at: int | None = None) -> str:
    b = bytearray(base64.b64decode(text))
    b[len(b) // 2 if at is None else at] ^= 0x01
    return base64.b64encode(bytes(b)).decode()


B64_32 = base64.b64encode(bytes(32)).decode()
V2_DOC_CASES = [
    pytest.param(setp("event.event", lambda v: "not base64!"), {C.BAD_SCHEMA}, "event.event", id="event-not-b64"),
    pytest.param(setp("event.event", lambda v: v[:16]), {C.TRUNCATED, C.BAD_SCHEMA}, "event", id="event-truncated"),
    pytest.param(setp("event.signature", lambda v: v[:-4]), {C.BAD_SCHEMA}, "event.signature", id="sig-short"),
    pytest.param(setp("event.root", lambda v: B64_32[:-4]), {C.BAD_SCHEMA}, "event.root", id="batch-root-short"),
    pytest.param(setp("event.count", lambda v: 0), {C.BAD_SCHEMA}, "event.count", id="count-zero"),
    pytest.param(setp("event.count", lambda v: 10**9), {C.BAD_SCHEMA}, "event.count", id="count-huge"),
    pytest.param(setp("event.count", lambda v: "4"), {C.BAD_SCHEMA}, "event.count", id="count-as-text"),
    pytest.param(setp("event.index", lambda v: -1), {C.CHECKPOINT_MISMATCH}, "event", id="index-negative"),
    pytest.param(setp("event.index", lambda v: 10**6), {C.CHECKPOINT_MISMATCH}, "event", id="index-beyond"),
    pytest.param(setp("event.path", lambda v: [B64_32] * 65), {C.OVERSIZED}, "event.path", id="batch-path-65"),
    pytest.param(setp("event.path", lambda v: [*v, B64_32]), {C.CHECKPOINT_MISMATCH}, "event.path",
                 id="batch-path-added"),
    pytest.param(setp("event.signature", lambda v: b64flip(v, 0)), {C.BAD_SIGNATURE}, "event", id="sig-flipped"),
    pytest.param(setp("event.signer", lambda v: 7), {C.BAD_SCHEMA}, "event.signer", id="signer-not-text"),
    pytest.param(lambda d: {**d, "event": {k: v for k, v in d["event"].items() if k != "root"}}, {C.BAD_SCHEMA},
                 "event.root", id="batch-root-missing"),
    pytest.param(setp("path.0", lambda v: "zz"), {C.BAD_SCHEMA}, "proof.path", id="path-element-not-b64"),
    pytest.param(setp("path.0", b64flip), {C.CHECKPOINT_MISMATCH}, "path", id="path-element-flipped"),
    pytest.param(setp("checkpoint.event", b64flip), set(C), "checkpoint", id="checkpoint-event-flipped"),
    pytest.param(setp("checkpoint.signature", b64flip), {C.BAD_SIGNATURE}, "checkpoint",
                 id="checkpoint-signature-flipped"),
    pytest.param(setp("registrations.0", lambda v: "zz"), {C.BAD_SCHEMA}, "registrations[0]",
                 id="registration-not-an-object"),
    pytest.param(setp("registrations.0.signature", b64flip), {C.BAD_SIGNATURE}, "registrations[0]",
                 id="registration-signature-flipped"),
    pytest.param(setp("registrations", lambda v: v * 40), {C.OVERSIZED}, "registrations", id="registrations-80"),
]


def b64cut(n: int) -> Callable[[str], str]:
    """A base64 byte string without its last ``n`` bytes (negative: with -n zero bytes more)."""
    def apply(text: str) -> str:
        b = base64.b64decode(text)
        return base64.b64encode(b[:-n] if n > 0 else b + bytes(-n)).decode()
    return apply


V3_DOC_CASES = [
    pytest.param(dropp("events"), {C.BAD_SCHEMA}, "proof.events", id="events-missing"),
    pytest.param(setp("events", lambda v: []), {C.BAD_SCHEMA}, "events", id="events-empty"),
    pytest.param(setp("events", lambda v: v * 10_001), {C.OVERSIZED}, "events", id="events-10001"),
    pytest.param(setp("events.0", lambda v: "zz"), {C.BAD_SCHEMA}, "events[0]", id="event-not-an-object"),
    pytest.param(dropp("checkpoints"), {C.BAD_SCHEMA}, "proof.checkpoints", id="checkpoints-missing"),
    pytest.param(setp("checkpoints", lambda v: []), {C.BAD_SCHEMA}, "checkpoints", id="checkpoints-empty"),
    pytest.param(setp("checkpoints", lambda v: v * 1_025), {C.OVERSIZED}, "checkpoints", id="checkpoints-1025"),
    pytest.param(setp("events.0.event", lambda v: "not base64!"), {C.BAD_SCHEMA}, "events[0].event",
                 id="event-not-b64"),
    pytest.param(setp("events.0.event", lambda v: v[:16]), {C.TRUNCATED, C.BAD_SCHEMA}, "events[0]",
                 id="event-truncated"),
    pytest.param(setp("events.0.signature", b64cut(4)), {C.BAD_SCHEMA}, "events[0].signature", id="sig-short"),
    pytest.param(setp("events.0.signature", lambda v: b64flip(v, 0)), {C.BAD_SIGNATURE}, "events[0]",
                 id="sig-flipped"),
    pytest.param(setp("events.0.count", lambda v: 0), {C.BAD_SCHEMA}, "events[0].count", id="count-zero"),
    pytest.param(setp("events.0.count", lambda v: 10**9), {C.BAD_SCHEMA}, "events[0].count", id="count-huge"),
    pytest.param(setp("events.0.count", lambda v: "4"), {C.BAD_SCHEMA}, "events[0].count", id="count-as-text"),
    pytest.param(setp("events.0.index", lambda v: -1), {C.CHECKPOINT_MISMATCH}, "events[0]", id="index-negative"),
    pytest.param(setp("events.0.index", lambda v: 10**6), {C.CHECKPOINT_MISMATCH}, "events[0]", id="index-beyond"),
    pytest.param(setp("events.0.batch_path", b64cut(1)), {C.BAD_SCHEMA}, "events[0].batch_path",
                 id="batch-path-not-whole-hashes"),
    pytest.param(setp("events.0.batch_path", b64cut(-32 * 65)), {C.OVERSIZED}, "events[0].batch_path",
                 id="batch-path-65"),
    pytest.param(setp("events.0.batch_path", b64cut(-32)), {C.CHECKPOINT_MISMATCH}, "events[0]",
                 id="batch-path-added"),
    pytest.param(setp("events.0.batch_path", b64flip), {C.BAD_SIGNATURE}, "events[0]", id="batch-path-flipped"),
    pytest.param(setp("events.0.key_id", lambda v: 7), {C.BAD_SCHEMA}, "events[0].key_id", id="key-id-not-text"),
    pytest.param(setp("events.0.path", lambda v: "zz"), {C.BAD_SCHEMA}, "events[0].path", id="path-not-b64"),
    pytest.param(setp("events.0.path", b64cut(1)), {C.BAD_SCHEMA}, "events[0].path", id="path-not-whole-hashes"),
    pytest.param(setp("events.0.path", b64cut(-32 * 65)), {C.OVERSIZED}, "events[0].path", id="path-65"),
    pytest.param(setp("events.0.path", lambda v: b64flip(v, 0)), {C.CHECKPOINT_MISMATCH}, "events[0].path",
                 id="path-element-flipped"),
    pytest.param(setp("events.0.path", b64cut(32)), {C.CHECKPOINT_MISMATCH}, "events[0].path",
                 id="path-element-dropped"),
    pytest.param(setp("events.0.leaf_index", lambda v: -1), {C.CHECKPOINT_MISMATCH}, "events[0]",
                 id="leaf-index-negative"),
    pytest.param(setp("events.0.leaf_index", lambda v: 2**70), {C.CHECKPOINT_MISMATCH}, "events[0]",
                 id="leaf-index-2-to-70"),
    pytest.param(setp("events.0.leaf_index", lambda v: 1.5), {C.BAD_SCHEMA}, "events[0].leaf_index",
                 id="leaf-index-float"),
    pytest.param(setp("events.0.offset", lambda v: -1), {C.CHECKPOINT_MISMATCH}, "events[0].offset",
                 id="offset-negative"),
    pytest.param(setp("events.0.checkpoint", lambda v: -1), {C.BAD_SCHEMA}, "events[0].checkpoint",
                 id="checkpoint-index-negative"),
    pytest.param(setp("events.0.checkpoint", lambda v: True), {C.BAD_SCHEMA}, "events[0].checkpoint",
                 id="checkpoint-index-bool"),
    pytest.param(setp("checkpoints.0.event", b64flip), set(C), "checkpoints[0]", id="checkpoint-event-flipped"),
    pytest.param(setp("checkpoints.0.signature", b64flip), {C.BAD_SIGNATURE}, "checkpoints[0]",
                 id="checkpoint-signature-flipped"),
    pytest.param(setp("checkpoints.0", lambda v: {**v, "event": v["event"], "key_id": "nobody"}), {C.UNKNOWN_KEY},
                 "checkpoints[0]", id="checkpoint-key-unknown"),
    pytest.param(setp("registrations.0", lambda v: "zz"), {C.BAD_SCHEMA}, "registrations[0]",
                 id="registration-not-an-object"),
    pytest.param(setp("registrations.0.event", lambda v: v[:8]), {C.TRUNCATED, C.BAD_SCHEMA}, "registrations[0]",
                 id="registration-event-truncated"),
    pytest.param(setp("registrations.0.signature", b64flip), {C.BAD_SIGNATURE}, "registrations[0]",
                 id="registration-signature-flipped"),
    pytest.param(setp("registrations", lambda v: v * 40), {C.OVERSIZED}, "registrations", id="registrations-80"),
]


def _check(p: Proof, data: bytes, codes: set[RejectCode], part: str | None, tmp_path: Path) -> None:
    with pytest.raises(RejectError) as e:
        check_proof(data, p.home.anchors())
    assert e.value.code in codes, e.value
    if part is not None:
        assert str(e.value.evidence.get("part", "")).startswith(part), e.value
    f = tmp_path / "proof.json"
    f.write_bytes(data)
    before = log_records(p.home)
    r = cli(p.home, ["verify-proof", str(f)])
    assert r.exit_code == 1, r.output
    assert e.value.code.value in r.output, r.output
    assert log_records(p.home) == before


@pytest.mark.parametrize("damage,codes,part", FILE_CASES)
def test_a_bad_proof_file_fails_with_a_reject_code(proof: Proof, tmp_path: Path, damage: Callable[[bytes], bytes],
                                                   codes: set[RejectCode], part: str | None) -> None:
    _check(proof, damage(json.dumps(proof.doc).encode()), codes, part, tmp_path)


@pytest.mark.parametrize("version,damage,codes,part",
                         [pytest.param(v, *c.values, id=f"v{v}-{c.id}") for v, cases in
                          ((1, DOC_CASES), (2, V2_DOC_CASES), (3, V3_DOC_CASES)) for c in cases])
def test_a_damaged_proof_fails_naming_the_part(proof: Proof, tmp_path: Path, version: int,
                                               damage: Callable[[Doc], Doc], codes: set[RejectCode],
                                               part: str | None) -> None:
    good = {1: proof.doc, 2: proof.v2, 3: proof.v3}[version]
    bad = damage(copy.deepcopy(good))
    assert bad != good
    _check(proof, json.dumps(bad).encode(), codes, part, tmp_path)


def test_a_proof_checked_against_another_operator_key_fails(proof: Proof, tmp_path: Path) -> None:
    f = tmp_path / "proof.json"
    f.write_text(json.dumps(proof.v3))
    stranger = SigningKey.generate("operator").public.raw.hex()
    r = cli(None, ["verify-proof", str(f), "--operator-key", stranger])
    assert r.exit_code == 1 and "unknown_key" in r.output, r.output


@pytest.mark.parametrize("make", [
    pytest.param(lambda d: d / "missing.json", id="missing"),
    pytest.param(lambda d: d, id="a-directory"),
])
def test_an_unreadable_proof_file_is_bad_input(proof: Proof, tmp_path: Path, make: Callable[[Path], Path]) -> None:
    r = cli(proof.home, ["verify-proof", str(make(tmp_path))])
    assert r.exit_code == 2 and "file" in r.output, r.output
