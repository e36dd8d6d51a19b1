"""Every bound lives in ledger/limits.py (unit factors in ledger/units.py), and the relations between
bounds that the code relies on are asserted there and hold.

The source scan reads the packages with ``ast``: a module-level ``MAX_*`` assignment, or the literal
int64 maximum, anywhere else fails with the file and line.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

from ledger import limits, units
from ledger.log.base import Record
from ledger.wire import codec
from ledger.wire.events import EMPTY_CONTEXT, GENESIS_HASH, Event, Rejected
from processors.journal import rejected_body
from processors.runtime.processor import Quarantined

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "processors")
HOMES = {Path("ledger/limits.py"), Path("ledger/units.py")}
INT64_MAX_TEXT = "9223372036854775807"


def _sources() -> list[tuple[Path, ast.Module]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found.append((path.relative_to(ROOT), ast.parse(path.read_text(encoding="utf-8"), str(path))))
    assert len(found) > 50  # the scan really reads the packages
    return found


def _assigned_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = [t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        return [t.id for t in targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _is_int64_max(node: ast.AST) -> bool:
    """``2**63 - 1`` (in any spacing) or the integer itself."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value == 2**63 - 1
    return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)
            and isinstance(node.right, ast.Constant) and node.right.value == 1
            and isinstance(node.left, ast.BinOp) and isinstance(node.left.op, ast.Pow)
            and isinstance(node.left.left, ast.Constant) and node.left.left.value == 2
            and isinstance(node.left.right, ast.Constant) and node.left.right.value == 63)


def test_max_bounds_are_defined_only_in_limits():
    offenders = [f"{path}:{node.lineno} {name}"
                 for path, tree in _sources() if path not in HOMES
                 for node in tree.body for name in _assigned_names(node)
                 if name.lstrip("_").startswith("MAX_")]
    assert offenders == []


def test_int64_max_is_written_only_in_limits():
    offenders = []
    for path, tree in _sources():
        if path == Path("ledger/limits.py"):
            continue
        offenders += [f"{path}:{node.lineno}" for node in ast.walk(tree) if _is_int64_max(node)]
        text = (ROOT / path).read_text(encoding="utf-8").replace("_", "")
        if INT64_MAX_TEXT in text:
            offenders.append(f"{path}: {INT64_MAX_TEXT}")
    assert offenders == []


def test_the_scan_finds_what_it_forbids():
    tree = ast.parse("MAX_X_BYTES = 1\n_MAX_Y: int = 2\nA, MAX_Z = 1, 2\nN = 2**63 - 1\nM = 2 ** 63 - 1\nO = 9223372036854775807\n")
    names = [n for node in tree.body for n in _assigned_names(node) if n.lstrip("_").startswith("MAX_")]
    assert names == ["MAX_X_BYTES", "_MAX_Y", "MAX_Z"]
    assert sum(_is_int64_max(node) for node in ast.walk(tree)) == 3


def test_limits_names_carry_a_unit_and_a_reason():
    """Every MAX_* bound has a comment on its line or the line above: why that value."""
    lines = (ROOT / "ledger" / "limits.py").read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    bare = []
    for node in tree.body:
        for name in _assigned_names(node):
            if name.startswith("MAX_"):
                here, above = lines[node.lineno - 1], lines[node.lineno - 2]
                if "#" not in here and not above.lstrip().startswith("#"):
                    bare.append(name)
    assert bare == []


def test_int64_max_and_units():
    assert limits.INT64_MAX == 2**63 - 1 == int(INT64_MAX_TEXT)
    assert limits.INT32_MAX == 2**31 - 1
    assert units.US_PER_DAY == 86_400 * units.US_PER_S == 24 * units.US_PER_HOUR
    assert units.US_PER_WEEK == 7 * units.US_PER_DAY
    assert units.NS_PER_US * units.US_PER_S == 10**9
    assert units.MICROS_PER_USD == units.TOKENS_PER_MTOK == 10**6
    assert units.MILLI == 1000


# ------------------------------------------------------------------ relations


def test_relations_hold():
    assert limits.DUPLICATE_WINDOW_EVENTS >= limits.MAX_BATCH_EVENTS
    assert limits.MAX_EVENT_BYTES < limits.MAX_RECORD_BYTES
    assert limits.MAX_RUNNER_BATCH_BYTES >= limits.MAX_RECORD_BYTES
    assert limits.MAX_KAFKA_REQUEST_BYTES > limits.MAX_RECORD_BYTES
    assert 0 < limits.MAX_DEAD_LETTER_EVIDENCE_CHARS <= limits.MAX_JSON_TEXT_CHARS
    assert (limits.MAX_REJECTED_ORIGINAL_BYTES + 4 * limits.MAX_REJECT_REASON_CHARS
            + limits.MAX_DEAD_LETTER_EVIDENCE_CHARS + limits.DEAD_LETTER_ENVELOPE_BYTES) <= limits.MAX_EVENT_BYTES
    assert (limits.MAX_TREE_LEAVES - 1).bit_length() + 1 <= limits.MAX_PROOF_HASHES


def _load_limits_with(name: str, value: str) -> dict[str, object]:
    """Execute limits.py with one bound changed, as importing it would."""
    source = (ROOT / "ledger" / "limits.py").read_text(encoding="utf-8")
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(f"{name} = ")]
    assert len(hits) == 1, name
    lines[hits[0]] = f"{name} = {value}"
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines), "limits.py", "exec"), namespace)  # noqa: S102 - our own source, one value changed
    return namespace


def test_unchanged_limits_load():
    assert _load_limits_with("MAX_BATCH_EVENTS", "1_000")["MAX_BATCH_EVENTS"] == 1_000


@pytest.mark.parametrize(("name", "value"), [
    ("DUPLICATE_WINDOW_EVENTS", "999"),  # a re-delivered full batch would no longer be recognised
    ("MAX_BATCH_EVENTS", "5_000"),  # likewise, from the other side
    ("MAX_EVENT_BYTES", "2_000_000"),  # an event that no record can carry
    ("MAX_REJECTED_ORIGINAL_BYTES", "250_000"),  # a dead letter that is not a valid event
    ("DEAD_LETTER_ENVELOPE_BYTES", "70_000"),  # no room left for any evidence
    ("MAX_RUNNER_BATCH_BYTES", "512 * 1024"),  # a full-size record would not fit a processor batch
    ("MAX_PROOF_HASHES", "32"),  # valid proofs of large trees would be refused
    ("MAX_THROTTLE_LEVEL", "9"),  # the cap no longer where the delay passes 60 s
    ("MAX_MICROS", "2**61"),  # a sum of amounts overflows int64
])
def test_a_broken_relation_fails_at_import(name, value):
    with pytest.raises(AssertionError):
        _load_limits_with(name, value)


def _dead_letter_event(body: Rejected) -> bytes:
    wide = "\U0001d11e"  # a 4-byte UTF-8 character: the worst case for every text field
    signer, key = wide * limits.MAX_ID_CHARS, wide * limits.MAX_ID_CHARS
    content = codec.encode_content(limits.MAX_EVENT_TIME_US, EMPTY_CONTEXT, body)
    return codec.encode_event(Event(event_id=codec.derive_event_id(signer, key, content), signer_id=signer,
                                    seq=limits.INT64_MAX, prev_hash=GENESIS_HASH, idempotency_key=key,
                                    event_time_us=limits.MAX_EVENT_TIME_US, context=EMPTY_CONTEXT, body=body))


def test_the_largest_dead_letter_is_a_valid_event():
    wide = "\U0001d11e"
    body = Rejected(topic=wide * limits.MAX_ID_CHARS, partition=limits.INT32_MAX, offset=limits.INT64_MAX,
                    code=wide * limits.MAX_ID_CHARS, reason=wide * limits.MAX_REJECT_REASON_CHARS,
                    evidence_json="e" * limits.MAX_DEAD_LETTER_EVIDENCE_CHARS,
                    original=b"\xff" * limits.MAX_REJECTED_ORIGINAL_BYTES, original_size=limits.INT64_MAX,
                    original_sha256=bytes(limits.HASH_BYTES))
    raw = _dead_letter_event(body)
    assert len(raw) <= limits.MAX_EVENT_BYTES
    # the margin the envelope allowance claims: everything but the body's big fields fits in it
    big = limits.MAX_REJECTED_ORIGINAL_BYTES + 4 * limits.MAX_REJECT_REASON_CHARS + limits.MAX_DEAD_LETTER_EVIDENCE_CHARS
    assert len(raw) - big <= limits.DEAD_LETTER_ENVELOPE_BYTES
    assert codec.decode_event(raw).event.body == body


def test_the_journal_cuts_a_huge_quarantine_to_a_valid_dead_letter():
    original = b"x" * limits.MAX_REJECTED_ORIGINAL_BYTES
    record = Record(topic="ledger.events", partition=0, offset=7, key=b"k", value=original, append_time_us=0)
    q = Quarantined(record=record, code="oversized", reason="\U0001d11e" * 10 * limits.MAX_REJECT_REASON_CHARS,
                    evidence={"blob": "y" * 10 * limits.MAX_JSON_TEXT_CHARS})
    body = rejected_body(q)
    assert body.original == original and body.original_sha256 == hashlib.sha256(original).digest()
    assert len(body.evidence_json) == limits.MAX_DEAD_LETTER_EVIDENCE_CHARS
    assert len(_dead_letter_event(body)) <= limits.MAX_EVENT_BYTES
