"""Only a checkpoint signed by a holder of the operator's notary grant proves anything: an insider with
another processor key (the budgets processor's) cannot prove an event that was never appended — offline
(``verify_proof``) nor in the audit (``tokenledger verify``). A fresh home grants its notary; an older one
gets the grant once, when the notary's key is next ensured."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import RejectCode, RejectError
from ledger.integrity.checkpoints import audit_with_checkpoints, control_keyring, registration_records
from ledger.integrity.merkle import MerkleTree, leaf_hash
from ledger.integrity.proofs import CheckpointRef, build_inclusion_proof, verify_proof
from ledger.sdk.home import Home
from ledger.sdk.registration import NOTARY_SIGNER, bootstrap
from ledger.testing.homes import T0, build_record, make_home
from ledger.wire import codec
from ledger.wire.events import Action, Checkpoint, Grant
from processors.host.service import ensure_processor_key


def _forge(h: Home, signer: str) -> dict:
    """An inclusion proof of an event never appended, checkpointed by ``signer``'s processor key."""
    log = h.open_log()
    try:
        key = ensure_processor_key(h, signer.removeprefix("processor."), log)
        record, _ = build_record(key, [Action("never-appended")], t=T0 + 5)
        raw = codec.decode_batch(record).events[0]
        tree = MerkleTree()
        tree.append(leaf_hash(raw))
        cp = Checkpoint(topic=h.topic, partition=0, tree_size=1, root_hash=tree.root(), next_offset=1,
                        last_event_time_us=T0 + 5)
        cp_record, _ = build_record(key, [cp], start_seq=2, t=T0 + 6)
        cp_id = codec.decode_event(codec.decode_batch(cp_record).events[0]).event.event_id
        eid = codec.decode_event(raw).event.event_id
        doc = build_inclusion_proof(
            event_id=eid, topic=h.topic, partition=0, offset=0, record=record, leaf_index=0, tree_size=1,
            path=[], checkpoint=CheckpointRef(cp_id, h.topic, 0, 0, 0, cp_record),
            registrations=registration_records(log, h.control_topic, {key.key_id}))
        log.ensure_topic(h.topic_for("checkpoints"))
        log.append(h.topic_for("checkpoints"), [(signer.encode(), cp_record)])
        return doc
    finally:
        log.close()


def _fresh(tmp_path: Path) -> Home:
    h = Home.init(tmp_path / "home")
    log = h.open_log()
    try:
        bootstrap(h, log, price_book=False)
    finally:
        log.close()
    return h


def test_a_checkpoint_by_a_processor_without_the_notary_grant_proves_nothing(tmp_path):
    h = _fresh(tmp_path)
    doc = _forge(h, "processor.budgets")
    with pytest.raises(RejectError) as e:
        verify_proof(doc, h.anchors())
    assert e.value.code == RejectCode.NOT_GRANTED and e.value.evidence["signer_id"] == "processor.budgets"
    log = h.open_log()
    try:
        _, cr = audit_with_checkpoints(log, [h.control_topic, h.topic], h.topic_for("checkpoints"), h.anchors())
    finally:
        log.close()
    assert cr.checkpoints == 0 and cr.bad_records == 1 and not cr.ok
    assert cr.first_bad_record is not None and cr.first_bad_record["code"] == "not_granted"


def test_the_granted_notarys_checkpoint_verifies(tmp_path):
    h = _fresh(tmp_path)
    doc = _forge(h, NOTARY_SIGNER)  # the same construction, signed by the notary: the proof holds
    report = verify_proof(doc, h.anchors())
    assert report.checkpoint_signer == NOTARY_SIGNER


def test_an_old_home_gets_the_notary_grant_once(tmp_path):
    h = make_home(tmp_path / "home")  # registrations only, as homes were made before grants
    log = h.open_log()
    try:
        assert control_keyring(log, h.control_topic, h.anchors()).granted(NOTARY_SIGNER, "notary") is None
        for _ in range(2):
            ensure_processor_key(h, "notary", log)
        ring = control_keyring(log, h.control_topic, h.anchors())
        assert ring.granted(NOTARY_SIGNER, "notary") is not None
        grants = [d for rec in log.read(h.control_topic, 0, 0, 10_000)
                  for d in (codec.decode_event(r) for r in codec.decode_batch(rec.value).events)
                  if isinstance(d.event.body, Grant)]
        assert len(grants) == 1  # idempotent
    finally:
        log.close()


def test_registration_records_on_one_open_log_see_what_was_appended_since_the_last_call(tmp_path: Path):
    """The key records of the control topic are read once per open log and then only what was appended after (a
    prove on a home with the seeded price book decoded ~1,250 control events twice per proof before): a key
    registered after the first call is found by the next one."""
    from ledger.integrity.proofs import control_key_ids
    from ledger.sdk.emitter import Emitter
    from ledger.testing.homes import seed_key
    from ledger.wire.events import AgentRegistered

    def about(records: list[bytes]) -> set[str]:
        return {k for r in records for raw in codec.decode_batch(r).events
                for k in control_key_ids(codec.decode_event(raw).event.body)}

    h = make_home(tmp_path / "home", agents=("alice",))
    log = h.open_log()
    try:
        alice = h.load_key("alice").key_id
        first = registration_records(log, h.control_topic, {alice})
        assert alice in about(first)
        bob = seed_key("bob")
        assert bob.key_id not in about(registration_records(log, h.control_topic, {bob.key_id}))
        with Emitter.for_operator(h, log) as em:
            em.emit(AgentRegistered("bob", bob.key_id, bob.public.raw), event_time_us=T0 + 5)
        assert bob.key_id in about(registration_records(log, h.control_topic, {bob.key_id}))
        assert registration_records(log, h.control_topic, {alice}) == first  # unchanged for alice
    finally:
        log.close()
