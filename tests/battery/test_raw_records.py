"""Battery, class "raw records": bytes appended straight to the log, bypassing every SDK check.

One home gets one good chain for alice (two signed batches, built by hand) and then every bad record
below, each at a known offset; all six processors then run over it once (module-scoped, inline). Per
case, asserted: every processor that reads the topic quarantined the record at that offset with the
expected reason code and a non-empty reason, and none of them crashed or stopped (each reached the
log's end, and the good events are still there, once). The journal also publishes one dead letter
per bad record on ``<prefix>.rejected``, naming the same code. ``verify`` names them too (exit 1).

Event times are "now" (not a fixed 2026 date): the records must not depend on how wide the operator's
clock-skew window is, except in the one case that tests that window.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import limits
from ledger.errors import RecordTooLargeError, RejectCode
from ledger.integrity.keys import SigningKey
from ledger.log import read_all
from ledger.sdk.home import Home
from ledger.testing.homes import build_record, make_home, revoke
from ledger.wire import codec
from ledger.wire.events import Action, AgentRegistered, Context
from processors import REGISTRY
from processors.host.service import open_runner

from .support import cli, log_records

C = RejectCode
NOW_US = time.time_ns() // 1000
DAY_US = 86_400_000_000


@dataclasses.dataclass
class Chain:
    """alice's key and her two good batches (seq 1 and 2) with the hash after each."""

    key: SigningKey
    bob: SigningKey
    batch1: bytes
    batch2: bytes
    h1: bytes
    h2: bytes


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _event(key: SigningKey, body: Any, *, seq: int, prev: bytes, t: int = NOW_US, event_id: str | None = None,
           signer_id: str | None = None) -> bytes:
    content = codec.encode_content(t, Context(), body)
    signer = signer_id or key.signer_id
    eid = event_id or codec.derive_event_id(signer, None, content)
    return codec.assemble_event(event_id=eid, signer_id=signer, seq=seq, prev_hash=prev, idempotency_key=None,
                                content=content)


def _sign(key: SigningKey, raws: list[bytes], *, signer_id: str | None = None, key_id: str | None = None) -> bytes:
    signer, kid = signer_id or key.signer_id, key_id or key.key_id
    sig = key.sign(codec.batch_signing_bytes(signer, kid, [codec.event_hash(r) for r in raws]))
    return codec.encode_batch(signer, kid, raws, sig)


def next_batch(c: Chain, body: Any = None, **kw: Any) -> bytes:
    """A correct batch continuing alice's chain (seq 3 after the two good batches)."""
    return _sign(c.key, [_event(c.key, body or Action("next"), seq=3, prev=c.h2, **kw)])


Build = Callable[[Chain], tuple[str, bytes | None, bytes]]  # (logical topic, record key, record value)


def ev(fn: Callable[[Chain], bytes], key: bytes = b"alice") -> Build:
    return lambda c: ("events", key, fn(c))


# (build, the reject codes that name this defect)
CASES: list[Any] = [
    # not a batch at all
    pytest.param(ev(lambda c: b"\x00garbage\xff" * 3), {C.BAD_SCHEMA}, id="garbage"),
    pytest.param(ev(lambda c: b""), {C.TRUNCATED}, id="empty"),
    pytest.param(ev(lambda c: b"\xc3"), {C.TRUNCATED}, id="one-byte"),
    pytest.param(ev(lambda c: b'{"type": "page_view", "user": 42}', b"other-app"), {C.BAD_SCHEMA},
                 id="foreign-json"),
    pytest.param(ev(lambda c: next_batch(c)[:10]), {C.TRUNCATED}, id="header-only"),
    pytest.param(ev(lambda c: next_batch(c)[: len(next_batch(c)) // 2]), {C.TRUNCATED, C.BAD_SCHEMA},
                 id="truncated-half"),
    pytest.param(ev(lambda c: next_batch(c)[:-1]), {C.TRUNCATED, C.BAD_SIGNATURE, C.BAD_SCHEMA},
                 id="truncated-last-byte"),
    pytest.param(ev(lambda c: next_batch(c) + b"\x00"), {C.BAD_SCHEMA}, id="trailing-byte"),
    pytest.param(ev(lambda c: b"\x00\x01" + next_batch(c)[2:]), {C.BAD_SCHEMA}, id="wrong-marker"),
    pytest.param(ev(lambda c: next_batch(c)[:2] + b"\xee" * 8 + next_batch(c)[10:]), {C.UNKNOWN_SCHEMA},
                 id="unknown-fingerprint"),
    pytest.param(ev(lambda c: _flip(next_batch(c), 5)), {C.UNKNOWN_SCHEMA}, id="bit-flip-in-fingerprint"),
    # a batch that decodes but is not what it claims
    pytest.param(ev(lambda c: _flip(next_batch(c), -1)), {C.BAD_SIGNATURE}, id="bit-flip-in-signature"),
    pytest.param(ev(lambda c: _flip(next_batch(c), len(next_batch(c)) // 2)),
                 {C.BAD_SIGNATURE, C.BAD_SCHEMA, C.BAD_ID, C.TRUNCATED, C.INVALID_FIELD, C.UNKNOWN_KIND},
                 id="bit-flip-in-event"),
    pytest.param(ev(lambda c: next_batch(c)[:-64] + bytes(64)), {C.BAD_SIGNATURE}, id="zero-signature"),
    pytest.param(ev(lambda c: codec.encode_batch("alice", c.key.key_id, [_event(c.key, Action("x"), seq=3,
                                                                                prev=c.h2)], b"\x01" * 10)),
                 {C.BAD_SIGNATURE}, id="short-signature"),
    pytest.param(ev(lambda c: codec.encode_batch("alice", c.key.key_id, [], bytes(64))), {C.INVALID_FIELD},
                 id="no-events"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=3 + i, prev=c.h2)
                                            for i in range(limits.MAX_BATCH_EVENTS + 1)])),
                 {C.OVERSIZED}, id="too-many-events"),
    # wrong signer or key
    pytest.param(ev(lambda c: build_record(SigningKey.generate("mallory"), [Action("steal")], t=NOW_US)[0],
                    b"mallory"), {C.UNKNOWN_KEY}, id="unregistered-signer"),
    pytest.param(ev(lambda c: _sign(c.bob, [_event(c.key, Action("x"), seq=3, prev=c.h2)], signer_id="alice",
                                    key_id=c.key.key_id)), {C.BAD_SIGNATURE}, id="signed-with-another-key"),
    pytest.param(ev(lambda c: _sign(c.bob, [_event(c.key, Action("x"), seq=3, prev=c.h2)], signer_id="alice")),
                 {C.SIGNER_MISMATCH, C.UNKNOWN_KEY}, id="key-of-another-signer"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=1, prev=bytes(32), signer_id="bob")],
                                    signer_id="alice")), {C.SIGNER_MISMATCH}, id="event-signer-differs"),
    pytest.param(ev(lambda c: build_record(c.revoked, [Action("late")], t=NOW_US)[0], b"carol"),
                 {C.REVOKED_KEY}, id="revoked-key"),
    # chain: gaps, forks, replays, duplicates, ids
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=5, prev=c.h2)])), {C.SEQUENCE_GAP},
                 id="sequence-gap"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("other"), seq=2, prev=c.h1)])),
                 {C.FORK, C.REPLAY}, id="fork"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=3, prev=c.h1)])), {C.FORK},
                 id="wrong-previous-hash"),
    pytest.param(ev(lambda c: c.batch1), {C.DUPLICATE, C.REPLAY}, id="replay-of-first-batch"),
    pytest.param(ev(lambda c: c.batch2), {C.DUPLICATE, C.REPLAY}, id="duplicate-of-last-batch"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=3, prev=c.h2, event_id="0" * 32)])),
                 {C.BAD_ID}, id="event-id-not-derived"),
    pytest.param(ev(lambda c: _sign(c.key, [_event(c.key, Action("x"), seq=3, prev=c.h2, t=1)])),
                 {C.INVALID_FIELD}, id="event-time-1970"),
    # control events from someone who is not an operator
    pytest.param(lambda c: ("control", None, build_record(c.key, [AgentRegistered("eve", "ed25519:00", bytes(32))],
                                                          start_seq=3, prev_hash=c.h2, t=NOW_US)[0]),
                 {C.NOT_OPERATOR}, id="control-event-from-an-agent"),
    pytest.param(lambda c: ("control", None, b"\x00garbage\xff" * 3), {C.BAD_SCHEMA}, id="garbage-on-control"),
    # the log vouches for time: a claim a day ahead of the append time
    pytest.param(ev(lambda c: build_record(c.bob, [Action("future")], t=NOW_US + DAY_US)[0], b"bob"),
                 {"clock_skew"}, id="event-time-a-day-ahead"),
]


@dataclasses.dataclass
class Run:
    home: Home
    offsets: dict[str, tuple[str, int]]  # case id -> (physical topic, offset)
    quarantine: dict[str, dict[tuple[str, int], tuple[str, str]]]  # processor -> (topic, offset) -> (code, reason)
    letters: dict[tuple[str, int], str]  # journal's dead letters: (topic, offset) -> code


def _case_id(p: Any) -> str:
    return str(p.id)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    h = make_home(tmp_path_factory.mktemp("battery-raw") / "home", agents=("alice", "bob", "carol"))
    key, bob, carol = h.load_key("alice"), h.load_key("bob"), h.load_key("carol")
    revoke(h, "carol")
    e1 = _event(key, Action("first"), seq=1, prev=bytes(32))
    h1 = codec.event_hash(e1)
    e2 = _event(key, Action("second"), seq=2, prev=h1)
    chain = Chain(key, bob, _sign(key, [e1]), _sign(key, [e2]), h1, codec.event_hash(e2))
    chain.revoked = carol  # type: ignore[attr-defined]
    offsets: dict[str, tuple[str, int]] = {}
    with h.open_log() as log:
        log.append(h.topic, [(b"alice", chain.batch1), (b"alice", chain.batch2)])
        for p in CASES:
            logical, k, value = p.values[0](chain)
            topic = h.topic_for(logical)
            log.append(topic, [(k, value)])
            offsets[_case_id(p)] = (topic, log.end_offset(topic, 0) - 1)
    quarantine: dict[str, dict[tuple[str, int], tuple[str, str]]] = {}
    for name in sorted(REGISTRY):
        with h.open_log() as log:
            runner, store, _ = open_runner(h, name, log)
            try:
                runner.run_until_caught_up()
                assert runner.caught_up()
                rows = store.query("SELECT topic, log_offset, code, reason FROM quarantine")
            finally:
                store.close()
        quarantine[name] = {(t, o): (code, reason) for t, o, code, reason in rows}
    letters: dict[tuple[str, int], str] = {}
    with h.open_log() as log:
        for rec in read_all(log, h.topic_for("rejected")):
            for raw in codec.decode_batch(rec.value).events:
                body = codec.decode_event(raw).event.body
                assert (body.topic, body.offset) not in letters  # once each
                letters[(body.topic, body.offset)] = body.code
    yield Run(h, offsets, quarantine, letters)


@pytest.mark.parametrize("build,codes", CASES)
def test_every_processor_quarantines_the_record_with_its_reason(run: Run, request: pytest.FixtureRequest,
                                                                build: Build, codes: set[str]) -> None:
    case = request.node.callspec.id
    where = run.offsets[case]
    wanted = {str(c.value if isinstance(c, RejectCode) else c) for c in codes}
    readers = [n for n, cls in REGISTRY.items() if where[0].rsplit(".", 1)[-1] in cls.topics]
    assert len(readers) >= 5 or where[0] == run.home.control_topic
    for name in readers:
        got = run.quarantine[name].get(where)
        assert got is not None, (name, case, "not quarantined")
        code, reason = got
        assert code in wanted and reason, (name, case, code, reason)
    assert run.letters.get(where) in wanted  # the journal's dead letter names the same defect


def test_nothing_else_was_quarantined_and_the_good_chain_survived(run: Run) -> None:
    """The two good batches are accepted by every processor; no processor quarantined anything that was not
    appended as bad, so a bad record never takes a good one down with it."""
    bad = set(run.offsets.values())
    for name, rows in run.quarantine.items():
        assert set(rows) <= bad, (name, set(rows) - bad)
    with run.home.open_log() as log:
        first = (run.home.topic, 0)
        assert first not in bad and all(first not in rows for rows in run.quarantine.values())
        assert log.end_offset(run.home.topic, 0) == 2 + sum(1 for t, _ in bad if t == run.home.topic)


def test_verify_names_the_first_bad_record_and_exits_1(run: Run) -> None:
    r = cli(run.home, ["verify", "--json"])
    assert r.exit_code == 1, r.output
    report = json.loads(r.stdout)
    assert report["ok"] is False and sum(report["rejected"].values()) >= len(CASES) - 1


def test_an_oversized_record_never_reaches_the_log(tmp_path: Path) -> None:
    h = make_home(tmp_path / "home", agents=("alice",))
    before = log_records(h)
    with h.open_log() as log, pytest.raises(RecordTooLargeError) as e:
        log.append(h.topic, [(b"alice", b"\x00" * (limits.MAX_RECORD_BYTES + 1))])
    assert e.value.evidence.get("actual", limits.MAX_RECORD_BYTES + 1) == limits.MAX_RECORD_BYTES + 1
    assert log_records(h) == before
