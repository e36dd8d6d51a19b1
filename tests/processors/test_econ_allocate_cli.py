"""`tokenledger econ allocate` (every method with its parameters, tables and --json) and `econ estimate` with
Nash bargaining. Figures by hand from the default price book's claude-sonnet-4-6 line ($3 in, $15 out, $0.30
cache read per MTok): 10,000 request tokens and 3,000 response tokens cost RO 150_000, RI 30_000, SO 45_000 and
SI 9_000 micro-USD, 234_000 in all; the requestor incurs 159_000, the responder 75_000."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from processors.cli import build_app

app = build_app()
runner = CliRunner()
SONNET = "anthropic/claude-sonnet-4-6"
SIZES = ["--requestor", SONNET, "--responder", SONNET, "--request-tokens", "10000", "--response-tokens", "3000"]


def allocate(*args: str) -> dict:
    r = runner.invoke(app, ["econ", "allocate", *SIZES, *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize(("method", "requestor_pays", "net", "direction"), [
    ("requestor_pays", 234_000, 75_000, "requestor_to_responder"),
    ("responder_pays", 0, 159_000, "responder_to_requestor"),
    ("equal_split", 117_000, 42_000, "responder_to_requestor"),
    ("proportional", 117_000, 42_000, "responder_to_requestor"),
    ("shapley", 192_000, 33_000, "requestor_to_responder"),
])
def test_rule_based_and_shapley_methods(method, requestor_pays, net, direction):
    out = allocate("--method", method)
    assert (out["method"], out["requestor_pays_micros"], out["responder_pays_micros"]) == (
        method, requestor_pays, 234_000 - requestor_pays)
    assert (out["net_transfer_micros"], out["direction"], out["total_micros"]) == (net, direction, 234_000)
    assert out["flows_micros"] == {"request_output": 150_000, "request_input": 30_000, "response_output": 45_000,
                                   "response_input": 9_000}


def test_shapley_standalone_costs_and_cached_flows():
    out = allocate("--standalone-cost-b", "0.02")
    assert (out["requestor_pays_micros"], out["parameters"]["standalone_cost_b"]) == (182_000, 20_000)
    out = allocate("--request-cached", "2000", "--method", "equal_split")
    # RI: 8,000 at $3 + 2,000 at $0.30 per MTok = 24_600 micro-USD
    assert out["flows_micros"]["request_input"] == 24_600 and out["total_micros"] == 228_600


def test_nash_with_values_alpha_and_disagreement():
    out = allocate("--method", "nash_bargaining", "--value-a", "0.5", "--value-b", "0.3")
    # S = 0.8 - 0.234 = 0.566; the requestor pays value_a - S/2 = 0.217
    assert (out["method"], out["requestor_pays_micros"], out["parameters"]["surplus"]) == (
        "nash_bargaining", 217_000, 566_000)
    out = allocate("--method", "nash_bargaining", "--value-a", "0.5", "--value-b", "0.3", "--alpha", "0.6",
                   "--disagreement-a", "$0.01")
    # S = 0.556; x = 0.5 - 0.01 - 0.6 x 0.556 = 0.1564
    assert (out["requestor_pays_micros"], out["parameters"]["alpha"]) == (156_400, "0.6")
    out = allocate("--method", "nash_bargaining", "--value-a", "1", "--value-b", "0.5", "--alpha", "0.6")
    assert (out["requestor_pays_micros"], out["parameters"]["clamped"]) == (234_000, "responder")


def test_nash_without_surplus_refuses_unless_a_fallback_is_named():
    r = runner.invoke(app, ["econ", "allocate", *SIZES, "--method", "nash_bargaining", "--value-a", "0.1",
                            "--value-b", "0.1"])
    assert r.exit_code != 0 and "surplus" in r.output
    out = allocate("--method", "nash_bargaining", "--value-a", "0.1", "--value-b", "0.1",
                   "--no-surplus-fallback", "proportional")
    assert (out["method"], out["parameters"]["requested_method"], out["parameters"]["outcome"]) == (
        "proportional", "nash_bargaining", "no_surplus")


@pytest.mark.parametrize(("args", "named"), [
    (["--method", "nash_bargaining"], "value_a"),
    (["--method", "nash_bargaining", "--value-a", "1", "--value-b", "1", "--alpha", "1.5"], "alpha"),
    (["--method", "nash_bargaining", "--value-a", "1", "--value-b", "1", "--alpha", "half"], "alpha"),
    (["--method", "shapley", "--alpha", "0.5"], "alpha"),
    (["--method", "equal_split", "--standalone-cost-b", "0.01"], "standalone_cost_b"),
    (["--method", "beneficiary_pays"], "beneficiary_pays"),
    (["--method", "nash_bargaining", "--value-a", "abc", "--value-b", "1"], "value_a"),
    (["--method", "nash_bargaining", "--value-a", "-1", "--value-b", "1"], "value_a"),
    (["--value-a", "0.0000001"], "value_a"),
    (["--request-cached", "10001"], "request_cached"),
])
def test_bad_parameters_exit_2_naming_them(args, named):
    r = runner.invoke(app, ["econ", "allocate", *SIZES, *args])
    assert r.exit_code == 2, r.output
    assert named in r.output


def test_tables():
    r = runner.invoke(app, ["econ", "allocate", *SIZES, "--method", "nash_bargaining", "--value-a", "0.5",
                            "--value-b", "0.3"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "allocation: nash_bargaining" in r.output and "$0.217000" in r.output
    assert "parameter surplus" in r.output and "$0.566000" in r.output
    assert "interaction cost ($0.234000)" in r.output


def test_estimate_includes_nash_when_both_values_are_given():
    r = runner.invoke(app, ["econ", "estimate", *SIZES, "--value-a", "0.5", "--value-b", "0.3", "--json"])
    assert r.exit_code == 0, r.output
    nash = json.loads(r.stdout)["allocations"]["nash_bargaining"]
    assert (nash["requestor_pays_micros"], nash["direction"]) == (217_000, "requestor_to_responder")
    r = runner.invoke(app, ["econ", "estimate", *SIZES, "--json"])
    assert "nash_bargaining" not in json.loads(r.stdout)["allocations"]
    r = runner.invoke(app, ["econ", "estimate", *SIZES, "--value-a", "0.5"])
    assert r.exit_code == 2 and "value-b" in r.output
