"""The home layout in one place, the bootstrap every new home gets, and registering a signer."""

from __future__ import annotations

import pytest

from ledger.economics.price_events import seed_events
from ledger.errors import ValidationError
from ledger.integrity.verify import audit
from ledger.log import read_all
from ledger.sdk import views
from ledger.sdk.home import OPERATOR_ID, Home, HomeLayout
from ledger.sdk.registration import NOTARY_SIGNER, bootstrap, register_signer
from ledger.wire import codec
from ledger.wire.events import AgentRegistered, Grant


def _control_bodies(h: Home) -> list[object]:
    log = h.open_log()
    try:
        return [codec.decode_event(raw).event.body for rec in read_all(log, h.control_topic)
                for raw in codec.decode_batch(rec.value).events]
    finally:
        log.close()


def test_layout_names_every_part_under_the_home(tmp_path):
    lay = HomeLayout(tmp_path / "h")
    assert lay.config_file == tmp_path / "h" / "config.json"
    assert lay.key_path("alice") == tmp_path / "h" / "keys" / "alice.key"
    assert lay.locks_dir == tmp_path / "h" / "state" / "locks"
    assert lay.processor_dir("journal") == tmp_path / "h" / "processors" / "journal"
    assert lay.view_dir("budgets", "reservations") == tmp_path / "h" / "views" / "budgets" / "reservations"
    assert lay.views_sql_file == tmp_path / "h" / "views" / "views.sql"
    with pytest.raises(ValidationError):
        lay.key_path("../escape")  # signer ids name files: never a path
    assert not (tmp_path / "h").exists()  # a layout creates nothing
    h = Home.init(tmp_path / "h")
    assert h.config_file.exists() and h.keys_dir.is_dir() and h.locks_dir.is_dir()
    assert h.config["log"] == f"sqlite://{h.log_file.resolve()}"


def test_bootstrap_registers_the_operator_then_the_price_book(tmp_path):
    h = Home.init(tmp_path / "h")
    log = h.open_log()
    try:
        assert bootstrap(h, log) == len(seed_events())
        assert audit(log, h.ledger_topics, h.anchors()).ok
    finally:
        log.close()
    bodies = _control_bodies(h)
    assert isinstance(bodies[0], AgentRegistered) and bodies[0].agent_id == OPERATOR_ID
    assert bodies[0].role == "operator" and bodies[0].public_key == h.operator_key().public.raw
    # then the notary's key and its grant (only a granted notary's checkpoints count), then the price book
    assert isinstance(bodies[1], AgentRegistered) and (bodies[1].agent_id, bodies[1].role) == (NOTARY_SIGNER, "processor")
    assert isinstance(bodies[2], Grant) and (bodies[2].agent_id, bodies[2].capability) == (NOTARY_SIGNER, "notary")
    assert len(bodies) == 3 + len(seed_events()) and bodies[3:] == seed_events()
    h2 = Home.init(tmp_path / "bare")
    log = h2.open_log()
    try:
        assert bootstrap(h2, log, price_book=False) == 0
    finally:
        log.close()
    assert len(_control_bodies(h2)) == 3  # the operator, the notary's registration and its grant


def test_register_signer_appends_then_saves_and_reuses_the_key(tmp_path):
    h = Home.init(tmp_path / "h")
    log = h.open_log()
    try:
        bootstrap(h, log, price_book=False)
        reg = register_signer(h, log, "alice", priority=3, org="acme", attributes={"team": "red"})
        assert reg.signer_id == "alice" and reg.role == "agent" and reg.key_file == str(h.key_path("alice"))
        assert h.load_key("alice").key_id == reg.key_id
        again = register_signer(h, log, "alice", project="p")  # a re-registration keeps the key file's key
        assert again.key_id == reg.key_id and again.event_id != reg.event_id
        with pytest.raises(ValidationError):
            register_signer(h, log, "bad/name")
        assert audit(log, h.ledger_topics, h.anchors()).ok
    finally:
        log.close()
    assert not list(h.keys_dir.glob("bad*"))
    regs = [b for b in _control_bodies(h) if isinstance(b, AgentRegistered) and b.agent_id == "alice"]
    assert [(r.priority, r.org, r.project, dict(r.attributes)) for r in regs] == [
        (3, "acme", None, {"team": "red"}), (1, None, "p", {})]


def test_sdk_views_read_nothing_before_publishing(tmp_path):
    h = Home.init(tmp_path / "h")
    assert views.read_view(h.path, "budgets", "budgets") == []
    assert views.reservation(h.path, "r1", "alice") is None
    ans = views.check(h.path, "alice", "llm_tokens", 10, at_us=1_700_000_000_000_000)
    assert (ans.verdict, ans.reason, ans.levels) == ("allow", "not_budgeted", ())
