"""Published views cannot lie: each publish is signed (a manifest of SHA-256s under the processor's key
registered on the log), `query`, `report` and `budget check` refuse forged files with exit 1 and say what
to do, `verify --views` reports each view, and `query` runs in a read-only sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from ledger.errors import ExitCode, ViewIntegrityError
from ledger.integrity import manifest as mf
from ledger.sdk.emitter import Emitter
from ledger.sdk.published import MANIFEST_FILE, registered_keys, verify_published
from ledger.testing.homes import T0, make_home
from ledger.wire.events import BudgetPolicy, Context
from processors.cli import build_app
from processors.host.service import serve, state_file

app = build_app()
runner = CliRunner()
CTX = Context(org="acme", project="p1", task="t1")
PROCESSORS = ("journal", "budgets")


def run_processors(h) -> None:
    log = h.open_log()
    try:
        for name in PROCESSORS:
            assert serve(h, name, log, exit_when_caught_up=True) == 0
    finally:
        log.close()


@pytest.fixture
def home(tmp_path):
    h = make_home(tmp_path / "home", agents=("alice", "bob"))
    log = h.open_log()
    try:
        with Emitter.for_operator(h, log) as em:
            em.emit(BudgetPolicy(scope="agent", scope_id="alice", budget_kind="action", allocation=10,
                                 soft_limit_pct=80, hard_limit_pct=100, throttle_at_soft=False, suspend_at_hard=False,
                                 emergency_reserve_pct=0, hard_limit_action="deny", reset_interval_us=3_600_000_000,
                                 effective_from_us=T0), event_time_us=T0 + 100)
    finally:
        log.close()
    with Emitter.open("alice", home=h.path, context=CTX, background_flush=False) as em:
        for i in range(4):
            em.action("llm.call", provider="anthropic", model="claude-sonnet-4", input_tokens=1_000,
                      output_tokens=200, event_time_us=T0 + 1_000 + i)
    run_processors(h)
    return h


def invoke(h, *args: str):
    return runner.invoke(app, [*args, "--home", str(h.path)])


def check_args(amount: int = 1) -> list[str]:
    return ["budget", "check", "--agent", "alice", "--kind", "action", "--amount", str(amount),
            "--at-us", str(T0 + 2_000), "--json"]


def only_file(d: Path) -> Path:
    (f,) = sorted(d.glob("*.parquet"))
    return f


def rewrite(path: Path, select: str) -> None:
    """Rewrite a published Parquet file in place with ``select`` over its old rows (the forger's tool)."""
    con = duckdb.connect()
    try:
        tmp = path.with_name("forged.tmp")
        con.execute(f"COPY (SELECT {select} FROM read_parquet('{path}')) TO '{tmp}' (FORMAT parquet)")
        tmp.replace(path)
    finally:
        con.close()


def test_untouched_views_are_read_and_verify_views_says_ok(home):
    r = invoke(home, "query", "SELECT count(*) AS n FROM events WHERE kind = 'action'", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"n": 4}]
    r = invoke(home, *check_args(7))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "deny"  # 4 used of 10: 7 more is over the hard limit
    r = invoke(home, "report", "--json")
    assert r.exit_code == 0, r.output
    r = invoke(home, "verify", "--views", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["views"]
    assert {(v["processor"], v["view"]) for v in rows} >= {("budgets", "budgets"), ("journal", "events")}
    assert all(v["ok"] for v in rows)


def test_a_forged_allocation_is_refused_by_budget_check_query_report_and_verify(home):
    budgets = only_file(home.view_dir("budgets", "budgets"))
    rewrite(budgets, "* REPLACE (0 AS allocation)")
    for args in (check_args(7), ["query", "SELECT * FROM budgets"], ["report"]):
        r = invoke(home, *args)
        assert r.exit_code == ExitCode.REJECTED, (args, r.output)
        assert "budgets.budgets does not match its signed manifest" in r.output
        assert "tokenledger replay budgets" in r.output and "tokenledger run budgets" in r.output
    with pytest.raises(ViewIntegrityError) as e:
        verify_published(home.views_dir("budgets"), "budgets", registered_keys(home))
    assert e.value.evidence["view"] == "budgets" and budgets.name in e.value.message
    r = invoke(home, "verify", "--views", "--json")
    assert r.exit_code == ExitCode.REJECTED
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    bad = [(v["processor"], v["view"]) for v in doc["views"] if not v["ok"]]
    assert bad == [("budgets", "budgets")]


def test_forged_token_counts_are_refused_and_a_restart_republishes(home):
    parts = sorted(home.view_dir("journal", "events").glob("*.parquet"))
    for part in parts:
        rewrite(part, "* REPLACE (input_tokens * 100 AS input_tokens, output_tokens * 100 AS output_tokens)")
    con = duckdb.connect()
    forged = con.execute("SELECT sum(input_tokens) FROM read_parquet(?)", [[str(p) for p in parts]]).fetchall()
    con.close()
    assert forged == [(400_000,)]  # the forgery took: 4 calls of 1,000 tokens now read as 400,000
    r = invoke(home, "query", "SELECT sum(input_tokens) FROM events")
    assert r.exit_code == ExitCode.REJECTED and "journal.events does not match its signed manifest" in r.output
    r = invoke(home, "verify", "--views")
    assert r.exit_code == ExitCode.REJECTED and "journal" in r.output and "SHA-256" in r.output
    run_processors(home)  # what the hint says: restart; the first publish re-exports every view from the state
    assert not any(p.exists() for p in parts)  # the forged files are gone, not re-signed
    r = invoke(home, "query", "SELECT count(*) AS n, sum(input_tokens) AS t FROM events WHERE kind = 'action'",
               "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"n": 4, "t": 4_000}]


def test_an_extra_file_is_never_read(home):
    d = home.views_dir("budgets")
    extra = d / "budgets" / "snapshot-999999999999-extra.parquet"
    extra.write_bytes(only_file(d / "budgets").read_bytes())
    rewrite(extra, "* REPLACE (0 AS allocation)")  # a second, forged row for alice's budget
    r = invoke(home, *check_args(7))
    assert r.exit_code == 0 and json.loads(r.stdout)["verdict"] == "deny"  # the listed file alone decides
    r = invoke(home, "query", "SELECT count(*) AS n FROM budgets", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"n": 1}]
    r = invoke(home, "verify", "--views", "--json")
    assert r.exit_code == 0
    (row,) = [v for v in json.loads(r.stdout)["views"] if v["view"] == "budgets" and v["processor"] == "budgets"]
    assert row["unlisted"] == [extra.name]


def test_a_forged_manifest_or_a_manifest_signed_by_an_agent_is_refused(home):
    d = home.views_dir("budgets")
    original = (d / MANIFEST_FILE).read_bytes()
    doc = json.loads(original)
    doc["manifest"]["batch"] += 1  # any change to the signed body
    (d / MANIFEST_FILE).write_text(json.dumps(doc))
    r = invoke(home, *check_args())
    assert r.exit_code == ExitCode.REJECTED and "signature that does not verify" in r.output
    # re-signed with an agent's key: registered on the log, but not for this processor
    m, _ = mf.parse(original, "budgets")
    alice = home.load_key("alice")
    forged = mf.ViewManifest(m.processor, "processor.budgets", alice.key_id, m.batch, m.positions, m.digest,
                             m.views, m.files)
    doc = json.loads(mf.sign(forged, _Renamed(alice, "processor.budgets")))
    (d / MANIFEST_FILE).write_text(json.dumps(doc))
    r = invoke(home, *check_args())
    assert r.exit_code == ExitCode.REJECTED and "registered to 'alice'" in r.output
    (d / MANIFEST_FILE).unlink()
    r = invoke(home, *check_args())
    assert r.exit_code == ExitCode.REJECTED and "no signed manifest" in r.output


class _Renamed:
    """A key that claims another signer id (the forger signing with a key it holds)."""

    def __init__(self, key, signer_id: str) -> None:
        self._key, self.signer_id, self.key_id = key, signer_id, key.key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM events) TO '{tmp}/out.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "ATTACH '{state}' AS st",
    "ATTACH '{state}' AS st (READ_ONLY)",
    "UPDATE budgets SET allocation = 0",
    "CREATE TABLE t AS SELECT 1",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "INSTALL httpfs",
    "SELECT * FROM read_parquet('{views}/budgets/budgets/*.parquet')",
], ids=lambda s: s.split(" (")[0][:40])
def test_query_is_sandboxed(home, tmp_path, sql):
    state = state_file(home, "budgets")
    before = state.read_bytes()
    text = sql.format(tmp=tmp_path, state=state, views=home.views_root)
    r = invoke(home, "query", text)
    assert r.exit_code == ExitCode.BAD_INPUT, r.output
    assert "reads only the published views" in r.output or "Can only update base table" in r.output
    assert not (tmp_path / "out.csv").exists()
    assert state.read_bytes() == before
