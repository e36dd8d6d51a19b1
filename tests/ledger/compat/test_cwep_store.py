"""ledger.compat.cwep's store and command line on a real ledger home: CMRs become signed, idempotent interaction
events that pass the ledger's audit and read back as written; settlements and deposits go to JSON lines."""

from __future__ import annotations

import json

import pytest

from ledger.compat.cwep import cli, metering, schema, spam
from ledger.compat.cwep.store import CMR_KEY_PREFIX, CWEPStore
from ledger.errors import IdempotencyConflictError, ValidationError
from ledger.integrity.verify import audit
from ledger.sdk.home import Home
from ledger.wire.events import Deposit, Interaction


def _audit(path):
    home = Home.open(path)
    log = home.open_log()
    events = []
    try:
        report = audit(log, home.ledger_topics, home.anchors(),
                       on_accepted=lambda _w, acc: events.extend(d.event for d in acc.events))
    finally:
        log.close()
    return report, [e for e in events if isinstance(e.body, Interaction)]


def test_cmr_is_a_signed_interaction_event_and_reads_back_as_written(tmp_path):
    store = CWEPStore(tmp_path / "cw")
    c = metering.Meter("did:example:a", "claude-opus-4-6").record_interaction(
        "did:example:b", "claude-haiku-4-5", request_tokens=12_000, request_cached_tokens=2_000, response_tokens=800,
        context_utilization_pre=0.25, context_utilization_post=0.5, coc_chain_ref="coc:7")
    store.append_cmr(c)
    report, interactions = _audit(tmp_path / "cw")
    assert report.ok and len(interactions) == 1
    event = interactions[0]
    assert (event.signer_id, event.idempotency_key) == ("did:example:a", CMR_KEY_PREFIX + c.interaction_id)
    body = event.body
    assert (body.request_output.tokens, body.request_input.tokens, body.request_input.cached_tokens,
            body.response_output.tokens, body.response_input.tokens) == (12_000, 12_000, 2_000, 800, 800)
    assert (body.requestor_model, body.responder_model) == ("claude-opus-4-6", "claude-haiku-4-5")
    (back,) = CWEPStore(tmp_path / "cw").read_cmrs()  # a second store object opens the same home
    assert back.to_dict() == c.to_dict()


def test_appending_twice_stores_once_and_a_changed_cmr_under_its_id_is_refused(tmp_path):
    store = CWEPStore(tmp_path / "cw")
    c = metering.Meter("a").record_interaction("b", request_tokens=100, response_tokens=10)
    first = store.append_cmr(c)
    assert store.append_cmr(c) == first
    assert store.cmr_count() == 1
    changed = metering.Meter("a").record_interaction("b", request_tokens=101, response_tokens=10,
                                                     interaction_id=c.interaction_id)
    with pytest.raises(IdempotencyConflictError):
        store.append_cmr(changed)
    assert store.cmr_count() == 1


def test_custom_pricing_survives_the_round_trip_and_read_limit_takes_the_last(tmp_path):
    store = CWEPStore(tmp_path / "cw")
    meter = metering.Meter("a", pricing=schema.AgentPricing(1.5, 7.25, 0.15))
    ids = []
    for n in (1, 2, 3):
        c = meter.record_interaction("b", responder_pricing=schema.AgentPricing(0.5, 2.0), request_tokens=1_000 * n,
                                     response_tokens=100)
        store.append_cmr(c)
        ids.append(c.interaction_id)
    assert [c.interaction_id for c in store.read_cmrs(limit=2)] == ids[1:]
    last = store.read_cmrs()[-1]
    assert last.requestor.pricing == schema.AgentPricing(1.5, 7.25, 0.15)
    assert last.flows["request_output"].cost_usd == 0.02175  # 3000 x 7.25 micro-USD
    stats = store.statistics()
    # requestor: RO 1.5k/3k/6k x 7.25 + SI 3 x 100 x 1.5 = 43500 + 450; responder: RI 6000 x 0.5 + SO 300 x 2 = 3600
    assert (stats["cmr_count"], stats["total_tokens"], stats["agent_costs"]) == (
        3, 2 * 6_000 + 2 * 300, {"a": 0.04395, "b": 0.0036})
    assert stats["total_cost_usd"] == 0.04755
    with pytest.raises(ValidationError):
        store.read_cmrs(limit=-1)


def test_deposits_are_signed_deposit_events_of_both_parties(tmp_path):
    store = CWEPStore(tmp_path / "cw")
    dep = spam.create_deposit("req", "resp", 50_000, 5.0, reputation_score=10, interaction_id="i-7")
    store.append_deposit(dep)
    assert store.read_deposits() == [dep]
    spam.resolve_deposit(dep, is_spam=True)
    store.append_deposit(dep)  # the create again (stored once) and now the forfeit, signed by the responder
    store.append_deposit(dep)
    (back,) = store.read_deposits()
    assert (back.status, back.amount_usd, back.multiplier, back.reputation_tier, back.interaction_id) == (
        "forfeited", 1.125, 4.5, "low", "i-7")
    report, _ = _audit(tmp_path / "cw")
    home = Home.open(tmp_path / "cw")
    log = home.open_log()
    steps = []
    try:
        audit(log, home.ledger_topics, home.anchors(), on_accepted=lambda _w, acc: steps.extend(
            (d.event.signer_id, d.event.body.action, d.event.body.amount_micros) for d in acc.events
            if isinstance(d.event.body, Deposit)))
    finally:
        log.close()
    assert report.ok and steps == [("req", "create", 1_125_000), ("resp", "forfeit", 0)]
    disputed = schema.DepositRecord(requestor_id="req", responder_id="resp", status="disputed")
    with pytest.raises(ValidationError) as e:
        store.append_deposit(disputed)
    assert e.value.field == "deposit.status"
    with pytest.raises(ValidationError) as e:
        store.append_deposit(schema.DepositRecord(requestor_id="req", responder_id="resp", multiplier=1.2345))
    assert e.value.field == "deposit.multiplier"
    assert store.deposit_count() == 1


def test_settlements_as_json_lines_and_deposits(tmp_path):
    store = CWEPStore(tmp_path / "cw")
    assert store.statistics()["total_cost_usd"] == 0.0 and store.read_settlements() == []
    store.append_settlement({"method": "shapley", "amount": 0.5})
    dep = schema.DepositRecord(requestor_id="a", responder_id="b", amount_usd=0.125)
    store.append_deposit(dep)
    assert store.read_settlements() == [{"method": "shapley", "amount": 0.5}]
    assert store.read_deposits() == [dep] and store.deposit_count() == 1
    with pytest.raises(ValidationError):
        store.append_deposit({"amount_usd": 1})
    (tmp_path / "cw" / "cwep" / "settlements.jsonl").open("a").write("{torn\n")
    with pytest.raises(ValidationError) as e:
        store.read_settlements()
    assert e.value.field == "settlements.jsonl:2"


def test_a_non_home_directory_is_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("not a home")
    with pytest.raises(Exception, match="not empty"):
        CWEPStore(tmp_path / "busy")


def run(capsys, store, *args):
    code = cli.main(["--store", str(store), "--json", *args])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else out.err


def test_cli_meter_settle_status(tmp_path, capsys):
    store = tmp_path / "cw"
    for _ in range(2):
        code, cmr = run(capsys, store, "meter", "--requestor", "a", "--responder", "b", "--request-tokens", "10000",
                        "--response-tokens", "3000", "--request-cached", "1000")
        assert code == 0 and cmr["flows"]["request_input"]["cached_tokens"] == 1000
    code, settled = run(capsys, store, "settle", "--method", "equal_split")
    assert settled["count"] == 2 and {s["requestor_pays_usd"] for s in settled["settlements"]} == {0.11565}
    run(capsys, store, "settle", "--method", "equal_split")  # again: nothing new recorded
    code, status = run(capsys, store, "status")
    # RI = 9000 x 3 + 1000 x 0.3 = 27300; total = 150000 + 27300 + 45000 + 9000 = 231300 micro-USD each
    assert (status["cmr_count"], status["settlement_count"], status["total_cost_usd"]) == (2, 2, 0.4626)


def test_cli_allocate_and_estimate(tmp_path, capsys):
    code, out = run(capsys, tmp_path / "cw", "allocate", "--requestor", "a", "--responder", "b", "--request-tokens",
                    "10000", "--response-tokens", "3000", "--method", "nash_bargaining", "--value-a", "0.5",
                    "--value-b", "0.3")
    assert code == 0 and out["allocation"]["requestor_pays_usd"] == 0.217
    assert not (tmp_path / "cw").exists()  # allocate stores nothing
    code, est = run(capsys, tmp_path / "cw", "estimate", "--request-tokens", "10000", "--response-tokens", "3000",
                    "--req-model", "claude-opus-4-6", "--resp-model", "claude-opus-4-6")
    assert est["total"] == 0.39


def test_cli_bad_input_exits_2_naming_the_field(tmp_path, capsys):
    code, err = run(capsys, tmp_path / "cw", "estimate", "--request-tokens", "-1", "--response-tokens", "3")
    assert code == 2 and "request_tokens" in err
    code, err = run(capsys, tmp_path / "cw", "estimate", "--request-tokens", "1", "--response-tokens", "3",
                    "--req-model", "gpt-9")
    assert code == 2 and "anthropic/gpt-9" in err


def test_cli_text_output(tmp_path, capsys):
    assert cli.main(["--store", str(tmp_path / "cw"), "estimate", "--request-tokens", "10000",
                     "--response-tokens", "3000"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == ["ro: $0.150000", "ri: $0.030000"]


def test_python_dash_m_entry_point(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ledger.compat.cwep", "--store", str(tmp_path / "cw"), "--json",
                           "meter", "--requestor", "a", "--responder", "b", "--request-tokens", "100",
                           "--response-tokens", "20"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["total_tokens"] == 240
    done = subprocess.run([sys.executable, "-m", "ledger.compat.cwep", "--version"], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "cwep 1.0.0")
    assert CWEPStore(tmp_path / "cw").cmr_count() == 1
