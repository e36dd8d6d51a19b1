"""`tokenledger reprice`: a side view with another price book, diffed against the live allocations.

- a price override changes exactly the interactions that use the re-priced model, and the report says
  that nothing else changed;
- `--as-of` prices every interaction with the book as it stood then (a price announced after every
  interaction changes nothing live, and only its model's interactions in the side view);
- the live views are untouched; bad input is a clear error; the econ calculators answer.
"""

from __future__ import annotations

import json

from support.econ import control, econ_home, rows, run
from typer.testing import CliRunner

from ledger.testing.homes import T0, fill
from ledger.wire.events import PriceSet
from processors.cli import build_app

app = build_app()  # the whole `tokenledger` command, as the console script builds it

runner = CliRunner()
OPUS = "anthropic/claude-opus-4-6"


def _home(tmp_path):
    h = econ_home(tmp_path)
    fill(h, tasks=10, batch_size=5)
    run(h, "allocations")
    return h


def _uses(h, model: str) -> set[str]:
    provider, name = model.split("/")
    return {r[0] for r in rows(h, "allocations", "SELECT event_id FROM interactions WHERE "
                                                 f"(requestor_provider = '{provider}' AND requestor_model = '{name}') OR "
                                                 f"(responder_provider = '{provider}' AND responder_model = '{name}')")}


def test_override_changes_only_what_uses_the_model(tmp_path):
    h = _home(tmp_path)
    before = rows(h, "allocations", "SELECT * FROM allocations ORDER BY 1, 6")
    r = runner.invoke(app, ["reprice", "--home", str(h.path), "--price", f"{OPUS}=4,20,0.4,5", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    touched = _uses(h, OPUS)
    assert 0 < len(touched) < rows(h, "allocations", "SELECT count(*) FROM interactions")[0][0]
    assert rep["models_with_a_changed_price"] == [OPUS]
    assert rep["changed_without_a_price_change"] == 0
    assert {c["interaction_event_id"] for c in rep["changes"]} == touched  # every opus interaction, nothing else
    assert rep["interactions_changed"] == len(touched) and rep["delta_micros"] < 0  # opus got cheaper
    assert all(c["new_total_micros"] < c["old_total_micros"] for c in rep["changes"])
    assert rows(h, "allocations", "SELECT * FROM allocations ORDER BY 1, 6") == before  # live untouched
    r = runner.invoke(app, ["reprice", "--home", str(h.path), "--price", f"{OPUS}=4,20,0.4,5"])
    assert r.exit_code == 0 and "nothing else changed" in r.output and OPUS in r.output


def test_as_of_uses_the_book_as_it_stood(tmp_path):
    h = econ_home(tmp_path)
    fill(h, tasks=10, batch_size=5)
    later = T0 + 10**12  # after every interaction
    control(h, [PriceSet(provider="openai", model="gpt-4.1", input_micros_per_mtok=1_000_000,
                         output_micros_per_mtok=4_000_000, cache_read_micros_per_mtok=250_000,
                         cache_write_micros_per_mtok=1_000_000, effective_from_us=later)], t=later)
    run(h, "allocations")
    r = runner.invoke(app, ["reprice", "--home", str(h.path), "--as-of", str(later), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["models_with_a_changed_price"] == ["openai/gpt-4.1"]
    assert {c["interaction_event_id"] for c in rep["changes"]} == _uses(h, "openai/gpt-4.1")
    assert rep["changed_without_a_price_change"] == 0
    # as of before the book existed, nothing can be priced: every allocation disappears, none is $0
    r = runner.invoke(app, ["reprice", "--home", str(h.path), "--as-of", "946684700000000", "--json"])
    rep = json.loads(r.stdout)
    assert all(c["new_total_micros"] is None for c in rep["changes"]) and rep["new_total_micros"] == 0


def test_bad_input_and_econ_calculators(tmp_path):
    h = _home(tmp_path)
    r = runner.invoke(app, ["reprice", "--home", str(h.path), "--price", "gpt=1,2"])
    assert r.exit_code == 2 and "provider/model=input,output,cache_read,cache_write" in r.output
    r = runner.invoke(app, ["reprice", "--home", str(h.path)])
    assert r.exit_code == 2 and "--as-of" in r.output
    r = runner.invoke(app, ["econ", "estimate", "--requestor", OPUS, "--responder", "openai/gpt-4.1",
                            "--request-tokens", "1500", "--response-tokens", "4000", "--json"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)
    assert est["total_micros"] == est["requestor_incurred_micros"] + est["responder_incurred_micros"]
    assert all(a["requestor_pays_micros"] + a["responder_pays_micros"] == est["total_micros"]
               for a in est["allocations"].values())
    r = runner.invoke(app, ["econ", "estimate", "--requestor", "acme/mystery", "--responder", OPUS,
                            "--request-tokens", "1", "--response-tokens", "1"])
    assert r.exit_code == 2 and "unknown model" in r.output
    for args in (["deposit", "--responder", "openai/gpt-4.1", "--request-tokens", "20000", "--reputation", "55",
                  "--interactions", "12"],
                 ["congestion", "--model", OPUS, "--tokens", "10000", "--utilization", "0.85", "--qos", "priority"],
                 ["cache", "--model", OPUS, "--context-tokens", "50000", "--uses", "10"]):
        r = runner.invoke(app, ["econ", *args, "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)
    r = runner.invoke(app, ["econ", "congestion", "--model", OPUS, "--tokens", "10", "--utilization", "nan"])
    assert r.exit_code == 2


def test_reprice_service_without_the_cli(tmp_path):
    """The use case returns a frozen report whose changes are typed rows; bad input is refused before I/O."""
    import dataclasses

    import pytest

    from ledger.errors import ValidationError
    from processors.services import reprice as service

    with pytest.raises(ValidationError) as e:
        service.request(None, [])  # no alternative book
    assert e.value.field == "reprice"
    with pytest.raises(ValidationError) as e:
        service.request(None, ["gpt=1,2"])
    assert e.value.field == "price" and e.value.value == "gpt=1,2"
    h = _home(tmp_path)
    log = h.open_log()
    try:
        rep = service.reprice(h, log, service.request(None, [f"{OPUS}=4,20,0.4,5"]))
    finally:
        log.close()
    assert rep.touched_models == (OPUS,) and rep.untouched_changed == 0
    assert {c.interaction_event_id for c in rep.changed} == _uses(h, OPUS)
    assert all(isinstance(c, service.AllocationChange) and c.new_total_micros < c.old_total_micros
               for c in rep.changed)
    assert rep.new_total < rep.old_total
    assert not (tmp_path / rep.side_file).exists()  # keep=False removes the side file
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.compared = 0  # type: ignore[misc]
