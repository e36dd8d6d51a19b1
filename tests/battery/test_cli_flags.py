"""Battery, class "CLI flags": the real `tokenledger` command on a real home refuses bad flag values.

Each case runs one command with one bad value and asserts the exit code (2 bad input, 3 home or key
problem), that the message names the field and the offending value, and that no topic of the log
grew (no event, no registration, no control event, no dead letter). One home serves the module: a
refusal changes nothing, so the cases cannot disturb each other (and each counts before and after).
"""

from __future__ import annotations

import pytest

from ledger.sdk.home import Home
from ledger.testing.homes import make_home

from .support import cli, log_records

ACTION = ["emit", "action", "-a", "alice", "--operation", "x"]
LLM = [*ACTION, "--provider", "anthropic", "--model", "m"]
DATA = ["emit", "data", "-a", "alice"]
COMPUTE = ["emit", "compute", "-a", "alice", "--node-id", "n1", "--cpu-time-slices", "1"]
TRUST = ["emit", "trust", "-a", "alice", "--subject", "bob", "--dimension", "accuracy", "--value", "0.5"]


def interaction(**over: str) -> list[str]:
    flags = {"responder": "bob", "interaction-id": "i1", "requestor-provider": "p", "requestor-model": "m",
             "responder-provider": "p", "responder-model": "m", "request-tokens": "10", "response-tokens": "10"}
    flags.update({k.replace("_", "-"): v for k, v in over.items()})
    return ["emit", "interaction", "-a", "alice", *[x for k, v in flags.items() for x in (f"--{k}", v)]]


BUDGET = ["budget", "set", "agent", "alice", "--kind", "action", "--allocation", "10"]

# (args, exit code, field named in the message, offending value shown)
CASES = [
    # numbers: negative, NaN, infinite, huge, not a number, too precise, unit mix-ups
    pytest.param([*ACTION, "--cost-weight", "-1"], 2, "cost_weight_milli", "-1000", id="cost-weight-negative"),
    pytest.param([*ACTION, "--cost-weight", "nan"], 2, "cost_weight", "nan", id="cost-weight-nan"),
    pytest.param([*ACTION, "--cost-weight", "inf"], 2, "cost_weight", "inf", id="cost-weight-inf"),
    pytest.param([*ACTION, "--cost-weight", "1e400"], 2, "cost_weight_milli", "1000000000", id="cost-weight-huge"),
    pytest.param([*ACTION, "--cost-weight", "abc"], 2, "cost_weight", "abc", id="cost-weight-text"),
    pytest.param([*ACTION, "--cost-weight", ""], 2, "cost_weight", "''", id="cost-weight-empty"),
    pytest.param([*ACTION, "--cost-weight", "0.0001"], 2, "cost_weight", "0.0001", id="cost-weight-too-precise"),
    pytest.param([*LLM, "--input-tokens", "-5"], 2, "input_tokens", "-5", id="input-tokens-negative"),
    pytest.param([*LLM, "--input-tokens", "nan"], 2, "input_tokens", "nan", id="input-tokens-nan"),
    pytest.param([*LLM, "--input-tokens", "1e99"], 2, "input_tokens", "1e99", id="input-tokens-float"),
    pytest.param([*LLM, "--input-tokens", "0x10"], 2, "input_tokens", "0x10", id="input-tokens-hex"),
    pytest.param([*LLM, "--input-tokens", str(10**13)], 2, "usage.input_tokens", str(10**13),
                 id="input-tokens-above-max"),
    pytest.param([*LLM, "--output-tokens", "-3"], 2, "output_tokens", "-3", id="output-tokens-negative"),
    pytest.param([*LLM, "--output-tokens", "inf"], 2, "output_tokens", "inf", id="output-tokens-inf"),
    pytest.param([*LLM, "--input-tokens", "10", "--cache-read-tokens", "11"], 2, "usage.cache_read_tokens", "11",
                 id="cache-read-above-input"),
    pytest.param([*LLM, "--reasoning-tokens", "5"], 2, "usage.reasoning_tokens", "5", id="reasoning-above-output"),
    pytest.param([*ACTION, "--input-tokens", "5"], 2, "provider", "None", id="tokens-without-model"),
    pytest.param([*DATA, "--bytes-read", "-1"], 2, "bytes_read", "-1", id="bytes-read-negative"),
    pytest.param([*DATA, "--bytes-read", "1e16"], 2, "bytes_read", "1e16", id="bytes-read-float"),
    pytest.param([*DATA, "--bytes-written", str(10**16)], 2, "bytes_written", str(10**16), id="bytes-written-huge"),
    pytest.param([*DATA, "--duration-us", "nan"], 2, "duration_us", "nan", id="duration-nan"),
    pytest.param(["emit", "compute", "-a", "alice", "--node-id", "n1", "--cpu-time-slices", "-1"], 2,
                 "cpu_time_slices", "-1", id="cpu-slices-negative"),
    pytest.param([*COMPUTE, "--parallel-jobs", "0"], 2, "parallel_jobs", "0", id="parallel-jobs-zero"),
    pytest.param([*COMPUTE, "--peak-memory-mb", "inf"], 2, "peak_memory_mb", "inf", id="peak-memory-inf"),
    pytest.param([*COMPUTE, "--gpu-time-slices", "1.5"], 2, "gpu_time_slices", "1.5", id="gpu-slices-fraction"),
    pytest.param(["emit", "trust", "-a", "alice", "--subject", "bob", "--dimension", "accuracy", "--value", "nan"],
                 2, "value", "nan", id="trust-value-nan"),
    pytest.param([*TRUST, "--half-life-us", "-1"], 2, "half_life_us", "-1", id="trust-half-life-negative"),
    pytest.param(interaction(request_tokens="-1"), 2, "request_tokens", "-1", id="interaction-tokens-negative"),
    pytest.param(interaction(request_cached_tokens="11"), 2, "flow.cached_tokens", "11",
                 id="interaction-cached-above-total"),
    pytest.param(interaction(response_tokens="nan"), 2, "response_tokens", "nan", id="interaction-tokens-nan"),
    # times
    pytest.param([*ACTION, "--time", "yesterday"], 2, "time", "yesterday", id="time-words"),
    pytest.param([*ACTION, "--time", "2026-13-45"], 2, "time", "2026-13-45", id="time-bad-date"),
    pytest.param([*ACTION, "--time", "2026-01-01T00:00:00+25:00"], 2, "time", "+25:00", id="time-bad-offset"),
    pytest.param([*ACTION, "--time", "-5"], 2, "time", "-5", id="time-negative"),
    pytest.param([*ACTION, "--time", ""], 2, "time", "''", id="time-empty"),
    pytest.param([*ACTION, "--time", "1"], 2, "event_time_us", "1", id="time-seconds-not-micros"),
    pytest.param([*ACTION, "--time", "99999999999999999999"], 2, "event_time_us", "99999999999999999999",
                 id="time-nanos-not-micros"),
    pytest.param([*ACTION, "--time", "2300-01-01T00:00:00Z"], 2, "event_time_us", "10413792000000000",
                 id="time-year-2300"),
    # ids, names and text
    pytest.param(["emit", "action", "-a", "ali\nce", "--operation", "x"], 2, "agent_id", "ali", id="agent-newline"),
    pytest.param(["emit", "action", "-a", "[/bold]", "--operation", "x"], 2, "agent_id", "[/bold]",
                 id="agent-rich-markup"),
    pytest.param(["emit", "action", "-a", "../etc/passwd", "--operation", "x"], 2, "agent_id", "../etc/passwd",
                 id="agent-path-traversal"),
    pytest.param(["emit", "action", "-a", "alice", "--operation", ""], 2, "operation", "''", id="operation-empty"),
    pytest.param(["emit", "action", "-a", "alice", "--operation", "x" * 2000], 2, "operation", "2000",
                 id="operation-too-long"),
    pytest.param(["emit", "action", "-a", "alice", "--operation", "a\x00b"], 2, "operation", "NUL",
                 id="operation-nul"),
    pytest.param([*ACTION, "--idempotency-key", "k\x00"], 2, "idempotency_key", "NUL", id="idempotency-key-nul"),
    pytest.param([*ACTION, "--org", ""], 2, "context.org", "''", id="org-empty"),
    pytest.param([*ACTION, "--label", "novalue"], 2, "label", "novalue", id="label-no-equals"),
    pytest.param([*ACTION, "--label", "=v"], 2, "context.labels.key", "''", id="label-empty-key"),
    pytest.param(["emit", "compute", "-a", "alice", "--node-id", "", "--cpu-time-slices", "1"], 2, "node_id", "''",
                 id="node-id-empty"),
    pytest.param(["emit", "trust", "-a", "alice", "--subject", "", "--dimension", "accuracy", "--value", "1"], 2,
                 "subject_id", "''", id="trust-subject-empty"),
    pytest.param(["emit", "trust", "-a", "alice", "--subject", "bob", "--dimension", "vibes", "--value", "1"], 2,
                 "dimension", "vibes", id="trust-dimension-unknown"),
    pytest.param(interaction(responder="alice"), 2, "responder_id", "alice", id="interaction-with-itself"),
    pytest.param(interaction(interaction_id=""), 2, "interaction_id", "''", id="interaction-id-empty"),
    # ids with control characters, escape sequences or bidi overrides (a full-match rule: no trailing newline)
    pytest.param(interaction(responder="b\nob"), 2, "responder_id", "b", id="responder-newline"),
    pytest.param(["emit", "trust", "-a", "alice", "--subject", "b\u202eob", "--dimension", "accuracy", "--value",
                  "1"], 2, "subject_id", "u202e", id="trust-subject-bidi-override"),
    pytest.param(interaction(interaction_id="i\n1"), 2, "interaction_id", "i", id="interaction-id-newline"),
    pytest.param(["emit", "compute", "-a", "alice", "--node-id", "n\x1b[31m", "--cpu-time-slices", "1"], 2,
                 "node_id", "n", id="node-id-escape-sequence"),
    pytest.param([*ACTION, "--org", "o\nrg"], 2, "context.org", "o", id="org-newline"),
    pytest.param([*ACTION, "--provider", "anthropic", "--model", "m\n"], 2, "usage.model", "m", id="model-newline"),
    pytest.param(["budget", "set", "agent", "a\nb", "--kind", "action", "--allocation", "10"], 2, "scope_id", "a",
                 id="budget-scope-id-newline"),
    # unknown kinds, enums and names
    pytest.param(["agent", "register", "bad\nname"], 2, "name", "bad", id="register-name-newline"),
    pytest.param(["agent", "register", "carol", "--role", "king"], 2, "role", "king", id="register-role-unknown"),
    pytest.param(["agent", "register", "carol", "--priority", "-1"], 2, "priority", "-1", id="register-priority"),
    pytest.param(["agent", "register", "carol", "--attr", "novalue"], 2, "attr", "novalue", id="register-attr"),
    pytest.param(["keys", "new", "[/bold]"], 2, "name", "[/bold]", id="keys-new-rich-markup"),
    pytest.param([*BUDGET[:4], "--kind", "gold", "--allocation", "10"], 2, "kind", "gold", id="budget-kind-unknown"),
    pytest.param([*BUDGET[:4], "--kind", "action", "--allocation", "-10"], 2, "allocation", "-10",
                 id="budget-allocation-negative"),
    pytest.param([*BUDGET, "--soft-limit-pct", "500"], 2, "soft_limit_pct", "500", id="budget-soft-above-hard"),
    pytest.param([*BUDGET, "--hard-limit-action", "explode"], 2, "hard_limit_action", "explode",
                 id="budget-action-unknown"),
    pytest.param([*BUDGET, "--confidence-threshold", "2"], 2, "confidence_threshold", "2.0",
                 id="budget-confidence-above-one"),
    pytest.param([*BUDGET, "--confidence-threshold", "nan"], 2, "confidence_threshold", "nan",
                 id="budget-confidence-nan"),
    pytest.param([*BUDGET, "--reset-interval-us", "-5"], 2, "reset_interval_us", "-5", id="budget-interval-negative"),
    pytest.param(["budget", "set", "galaxy", "alice", "--kind", "action", "--allocation", "10"], 2, "scope",
                 "galaxy", id="budget-scope-unknown"),
    pytest.param(["budget", "check", "--agent", "alice", "--kind", "gold", "--amount", "1"], 2, "kind", "gold",
                 id="budget-check-kind"),
    pytest.param(["budget", "check", "--agent", "alice", "--kind", "action", "--amount", "-1"], 2, "amount", "-1",
                 id="budget-check-amount"),
    pytest.param(["budget", "check", "--agent", "alice", "--kind", "action", "--amount", "1", "--at-us", "-1"], 2,
                 "at_us", "-1", id="budget-check-time"),
    pytest.param(["run", "nosuchprocessor"], 2, "processor", "nosuchprocessor", id="run-unknown-processor"),
    pytest.param(["digest", "nosuch"], 2, "processor", "nosuch", id="digest-unknown-processor"),
    pytest.param(["replay", "nosuch"], 2, "processor", "nosuch", id="replay-unknown-processor"),
    pytest.param(["import", "martian", "x"], 2, "kind", "martian", id="import-unknown-kind"),
    pytest.param(["tail", "--limit", "-1"], 2, "limit", "-1", id="tail-limit-negative"),
    pytest.param(["tail", "--from", "-3"], 2, "from", "-3", id="tail-from-negative"),
    pytest.param(["tail", "--kind", "teleport"], 2, "kind", "teleport", id="tail-kind-unknown"),
    pytest.param(["tail", "--topic", "nowhere"], 2, "topic", "nowhere", id="tail-topic-unknown"),
    pytest.param(["reprice", "--as-of", "yesterday"], 2, "as_of", "yesterday", id="reprice-as-of"),
    pytest.param(["reprice", "--price", "junk"], 2, "price", "junk", id="reprice-price-shape"),
    pytest.param(["reprice", "--price", "anthropic/m=1,2"], 2, "price", "anthropic/m=1,2", id="reprice-price-short"),
    pytest.param(["reprice", "--price", "anthropic/m=-1,2,3,4"], 2, "input", "-1000000", id="reprice-price-negative"),
    pytest.param(["reprice", "--limit", "-1"], 2, "limit", "-1", id="reprice-limit-negative"),
    pytest.param(["query", "SELECT * FROM nosuch"], 2, "sql", "nosuch", id="query-unknown-view"),
    pytest.param(["query", ""], 2, "sql", "''", id="query-empty"),
    pytest.param(["query", "SELECT * FROM read_csv('/etc/passwd')"], 2, "sql", "/etc/passwd",
                 id="query-reads-outside-file"),
    pytest.param(["query", "SELECT 1; COPY (SELECT 1) TO 'battery-copy.csv'"], 2, "sql", "battery-copy.csv",
                 id="query-writes-a-file"),
    pytest.param(["prove", "--consistency", "a", "b"], 2, "checkpoint", "a", id="prove-unknown-checkpoint"),
    pytest.param(["verify-proof", "/nonexistent/proof.json"], 2, "file", "/nonexistent/proof.json",
                 id="verify-proof-missing-file"),
    pytest.param(["verify-proof", __file__, "--operator-key", "zz"], 2, "operator_key", "zz",
                 id="verify-proof-operator-key"),
    pytest.param(["verify", "--log", "ftp://example"], 2, "log", "ftp://example", id="log-url-scheme"),
    pytest.param(["emit", "action", "-a", "nobody", "--operation", "x"], 3, "nobody.key", "key file not found",
                 id="agent-without-key"),
    pytest.param(["agent", "rotate", "nobody"], 2, "name", "nobody", id="rotate-unknown-agent"),
    pytest.param(["keys", "show", "nobody"], 3, "nobody.key", "key file not found", id="keys-show-without-key"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("battery-cli") / "home", agents=("alice", "bob"))


@pytest.mark.parametrize("args,code,field,value", CASES)
def test_bad_flag_is_a_typed_refusal_naming_field_and_value(home: Home, args: list[str], code: int, field: str,
                                                             value: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a command that wrongly writes a relative path would write here, not in the repo
    before = log_records(home)
    r = cli(home, args)
    assert r.exit_code == code, r.output
    assert field in r.output and value in r.output, r.output
    assert log_records(home) == before
    assert list(tmp_path.iterdir()) == []  # nothing written beside the home either


@pytest.mark.parametrize("args", [
    pytest.param(["emit", "teleport", "-a", "alice"], id="emit-unknown-kind"),
    pytest.param(["demo", "--tasks", "0"], id="demo-tasks-zero"),
    pytest.param(["demo", "--tasks", "100000000"], id="demo-tasks-huge"),
    pytest.param(["status", "--bogus"], id="unknown-flag"),
    pytest.param(["agent", "register", "carol", "--priority", "many"], id="int-flag-text"),
])
def test_bad_usage_is_exit_2_before_anything_runs(home: Home, args: list[str]) -> None:
    before = log_records(home)
    r = cli(home, args)
    assert r.exit_code == 2 and "Error" in r.output, r.output
    assert log_records(home) == before
