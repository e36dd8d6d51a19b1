"""Spam deposits on the ledger: ``deposit`` events (create by the requestor; refund or forfeit by the responder)
folded by the reputation processor into ``deposits`` (one row per deposit, with the tier the ledger's reputation
gives the requestor) and ``deposit_events`` (every step, refused ones with their reason); restart and replay
reach the live digest."""

from __future__ import annotations

import pytest
from test_budgets_processor import replayed, rows, run

from ledger.economics.econ import classify_reputation
from ledger.economics.reputation import TrustEvent, reputation
from ledger.errors import ValidationError
from ledger.sdk.emitter import Emitter
from ledger.testing.homes import T0, make_home
from ledger.wire.events import Deposit
from processors.host.service import live_digest

S = 1_000_000  # one second, in microseconds


def emit(h, signer, body, t):
    with Emitter.open(signer, home=h.path, background_flush=False) as em:
        return em.emit(body, event_time_us=t)


def test_deposit_life_cycle_refusals_and_replay(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "bob", "carol"))
    ids = {}
    ids["c1"] = emit(h, "alice", Deposit("dep-1", "create", "alice", "bob", 1_875_000, "unknown", 7_500, "i-1"),
                     T0 + 10 * S)
    ids["r1"] = emit(h, "bob", Deposit("dep-1", "refund", "alice", "bob"), T0 + 20 * S)
    run(h, "reputation", max_records=1)  # a first process; the next one restores from the views
    emit(h, "bob", Deposit("dep-2", "create", "alice", "carol", 375_000, "medium", 1_500),
         T0 + 25 * S)  # signed by bob, not the requestor: refused
    with Emitter.open("carol", home=h.path, background_flush=False) as em:
        trust_id = em.trust("alice", "accuracy", 3, event_time_us=T0 + 30 * S)
    ids["c2"] = emit(h, "alice", Deposit("dep-2", "create", "alice", "carol", 375_000, "medium", 1_500), T0 + 40 * S)
    emit(h, "alice", Deposit("dep-2", "forfeit", "alice", "carol"), T0 + 50 * S)  # not the responder
    ids["f2"] = emit(h, "carol", Deposit("dep-2", "forfeit", "alice", "carol"), T0 + 60 * S)
    emit(h, "carol", Deposit("dep-2", "refund", "alice", "carol"), T0 + 70 * S)  # already forfeited
    emit(h, "carol", Deposit("dep-9", "refund", "alice", "carol"), T0 + 80 * S)  # never created
    emit(h, "alice", Deposit("dep-1", "create", "alice", "bob", 1, "low", 4_500), T0 + 90 * S)  # id in use
    emit(h, "bob", Deposit("dep-1", "forfeit", "carol", "bob"), T0 + 95 * S)  # other parties
    run(h, "reputation", max_records=2)

    deposits = {r["deposit_id"]: r for r in rows(h, "SELECT * FROM deposits", "reputation")}
    assert set(deposits) == {"dep-1", "dep-2"}
    d1, d2 = deposits["dep-1"], deposits["dep-2"]
    assert (d1["status"], d1["amount_micros"], d1["reputation_tier"], d1["ledger_tier"], d1["multiplier_milli"],
            d1["interaction_id"], d1["created_at_us"], d1["resolved_at_us"], d1["created_event_id"],
            d1["resolved_event_id"]) == ("refunded", 1_875_000, "unknown", "unknown", 7_500, "i-1", T0 + 10 * S,
                                         T0 + 20 * S, ids["c1"], ids["r1"])
    # dep-2 was created after carol's trust about alice: the ledger's tier is that reputation's, x 100
    expected = reputation([TrustEvent(trust_id, "carol", "alice", "accuracy", 3.0, T0 + 30 * S)], "alice",
                          T0 + 40 * S)
    assert d2["ledger_tier"] == classify_reputation(expected.overall * 100).value
    assert (d2["status"], d2["requestor_id"], d2["responder_id"], d2["resolved_event_id"], d2["interaction_id"]) == (
        "forfeited", "alice", "carol", ids["f2"], None)

    steps = rows(h, "SELECT deposit_id, action, signer, accepted, reason FROM deposit_events "
                    "ORDER BY event_time_us", "reputation")
    assert [(s["deposit_id"], s["action"], s["signer"], s["accepted"]) for s in steps] == [
        ("dep-1", "create", "alice", True), ("dep-1", "refund", "bob", True), ("dep-2", "create", "bob", False),
        ("dep-2", "create", "alice", True), ("dep-2", "forfeit", "alice", False), ("dep-2", "forfeit", "carol", True),
        ("dep-2", "refund", "carol", False), ("dep-9", "refund", "carol", False), ("dep-1", "create", "alice", False),
        ("dep-1", "forfeit", "bob", False)]
    reasons = [s["reason"] for s in steps if not s["accepted"]]
    assert reasons == ["a create is signed by the requestor (alice), not bob",
                       "a forfeit is signed by the responder (carol), not alice", "already forfeited",
                       "no such deposit (no create before it in the log)", "deposit_id already created",
                       "names other parties than the create"]
    assert all(s["reason"] == "" for s in steps if s["accepted"])
    assert replayed(h, "reputation")["digest"] == live_digest(h, "reputation")["digest"]


@pytest.mark.parametrize(("kw", "field"), [
    ({"action": "hold"}, "action"),
    ({"responder_id": "alice"}, "responder_id"),
    ({"amount_micros": -1}, "amount_micros"),
    ({"reputation_tier": "gold"}, "reputation_tier"),
    ({"action": "refund"}, "amount_micros"),  # a resolution carries no amount
    ({"action": "forfeit", "amount_micros": 0, "reputation_tier": "low"}, "reputation_tier"),
    ({"multiplier_milli": 10**9}, "multiplier_milli"),
])
def test_a_malformed_deposit_is_refused_naming_the_field(kw, field):
    args = {"deposit_id": "d", "action": "create", "requestor_id": "alice", "responder_id": "bob",
            "amount_micros": 5, "reputation_tier": "low", "multiplier_milli": 4_500} | kw
    with pytest.raises(ValidationError) as e:
        Deposit(**args)
    assert e.value.field == field


def test_a_cwep_store_is_a_home_whose_deposits_the_processor_folds(tmp_path):
    """The CWEP layer's deposits are the same events: the reputation processor shows them in ``deposits``."""
    from ledger.compat.cwep import CWEPStore, create_deposit, resolve_deposit

    store = CWEPStore(tmp_path / "cw")
    refunded = create_deposit("req", "resp", 100_000, 3.0, reputation_score=55)  # medium: 0.3 x 1.5 x 1
    store.append_deposit(resolve_deposit(refunded, is_spam=False))
    open_one = create_deposit("req", "other", 1_000, 0.25)  # unknown: 0.00025 x 1.5 x 5
    store.append_deposit(open_one)
    run(store.home, "reputation")
    got = {r["deposit_id"]: (r["requestor_id"], r["responder_id"], r["amount_micros"], r["reputation_tier"],
                             r["multiplier_milli"], r["status"], r["ledger_tier"])
           for r in rows(store.home, "SELECT * FROM deposits", "reputation")}
    assert got == {refunded.deposit_id: ("req", "resp", 450_000, "medium", 1_500, "refunded", "unknown"),
                   open_one.deposit_id: ("req", "other", 1_875, "unknown", 7_500, "committed", "unknown")}


def test_the_cli_records_a_deposit_and_its_refund(tmp_path):
    from typer.testing import CliRunner

    from processors.cli import build_app

    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    cli = CliRunner()
    home = ["--home", str(h.path)]
    made = cli.invoke(build_app(), ["emit", "deposit", "dep-9", "-a", "alice", "--action", "create", "--responder",
                                    "bob", "--amount-micros", "1200", "--tier", "low", "--multiplier", "3",
                                    "--interaction-id", "i-9", "--time", str(T0 + 5 * S), *home])
    assert made.exit_code == 0, made.output
    back = cli.invoke(build_app(), ["emit", "deposit", "dep-9", "-a", "bob", "--action", "refund", "--requestor",
                                    "alice", "--time", str(T0 + 9 * S), *home])
    assert back.exit_code == 0, back.output
    # refusals name the flag and append nothing
    for args, field in ((["-a", "alice", "--action", "create", "--requestor", "bob"], "responder"),
                        (["-a", "bob", "--action", "forfeit", "--responder", "alice"], "requestor"),
                        (["-a", "bob", "--action", "refund", "--requestor", "alice", "--amount-micros", "5"], "action"),
                        (["-a", "alice", "--action", "create", "--responder", "bob", "--tier", "gold"],
                         "reputation_tier")):
        bad = cli.invoke(build_app(), ["emit", "deposit", "dep-x", *args, *home])
        assert bad.exit_code == 2 and field in bad.output, (args, bad.output)
    run(h, "reputation")
    (row,) = rows(h, "SELECT deposit_id, requestor_id, responder_id, amount_micros, reputation_tier, multiplier_milli,"
                  " interaction_id, status FROM deposits", "reputation")
    assert row == {"deposit_id": "dep-9", "requestor_id": "alice", "responder_id": "bob", "amount_micros": 1200,
                   "reputation_tier": "low", "multiplier_milli": 3000, "interaction_id": "i-9", "status": "refunded"}
