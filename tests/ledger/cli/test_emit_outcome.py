"""``tokenledger emit outcome``: a task's outcome as a signed ``Outcome`` event. A confidence is the signer's own;
a score counts only as a grade of another agent by a holder of the grader grant, so the command refuses any other
score before appending (readers would keep it and never count it); once granted, the reputation processor counts
the grade."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.log import read_all
from ledger.sdk.home import Home
from ledger.wire import codec
from ledger.wire.events import Outcome
from processors.cli import build_app
from processors.host.service import open_runner, state_file

app = build_app()
runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    r = runner.invoke(app, ["init", "--home", str(h), "--json", "--no-price-book"])
    assert r.exit_code == 0, r.output
    for name in ("writer", "critic"):
        r = runner.invoke(app, ["agent", "register", name, "--home", str(h)])
        assert r.exit_code == 0, r.output
    return h


def outcomes(h: Path) -> list[tuple[str, Outcome]]:
    home = Home.open(h)
    log = home.open_log()
    try:
        return [(ev.signer_id, ev.body) for rec in read_all(log, home.topic)
                for raw in codec.decode_batch(rec.value).events
                if isinstance((ev := codec.decode_event(raw).event).body, Outcome)]
    finally:
        log.close()


def ends(h: Path) -> tuple[int, ...]:
    home = Home.open(h)
    log = home.open_log()
    try:
        return tuple(log.end_offset(t, p) for t in home.ledger_topics for p in range(log.partitions(t)))
    finally:
        log.close()


def emit(h: Path, *args: str):
    return runner.invoke(app, ["emit", "outcome", *args, "--home", str(h)])


def test_help_has_an_example():
    r = runner.invoke(app, ["emit", "outcome", "--help"])
    assert r.exit_code == 0 and "Example: tokenledger emit outcome" in r.output and "--subject" in r.output


def test_a_confidence_and_a_failure_are_the_signers_own(home):
    assert emit(home, "task-7", "-a", "writer", "--confidence", "0.9").exit_code == 0
    r = emit(home, "task-8", "-a", "writer", "--failed", "--task", "task-8", "--json")
    assert r.exit_code == 0, r.output
    assert outcomes(home) == [
        ("writer", Outcome(task_id="task-7", confidence_milli=900, score_milli=None, success=True, subject_id=None)),
        ("writer", Outcome(task_id="task-8", confidence_milli=None, score_milli=None, success=False, subject_id=None)),
    ]


@pytest.mark.parametrize(("args", "field"), [
    (["--score", "0.8"], "score"),  # a score without a subject: self-reported, never counted
    (["--score", "0.8", "--subject", "critic"], "score"),  # the signer grading itself
    (["--subject", "writer"], "subject"),  # a subject without a score
    (["--confidence", "1.5"], "confidence"),
    (["--confidence", "-0.1"], "confidence"),
    (["--confidence", "nan"], "confidence"),
    (["--score", "0.8125", "--subject", "writer"], "score"),  # more than 3 decimals
])
def test_bad_flags_append_nothing(home, args, field):
    before = ends(home)
    r = emit(home, "task-7", "-a", "critic", *args)
    assert r.exit_code == 2, r.output
    assert f"invalid {field}=" in r.output
    assert ends(home) == before


def test_a_grade_needs_the_grader_grant_and_then_counts(home):
    before = ends(home)
    r = emit(home, "task-7", "-a", "critic", "--score", "0.8", "--subject", "writer")
    assert r.exit_code == 1, r.output
    assert "not_granted" in r.output and "agent grant critic grader" in r.output
    assert ends(home) == before, "nothing appended: readers would never count that score"

    r = runner.invoke(app, ["agent", "grant", "critic", "grader", "--home", str(home)])
    assert r.exit_code == 0, r.output
    r = emit(home, "task-7", "-a", "critic", "--score", "0.8", "--subject", "writer", "--confidence", "0.7")
    assert r.exit_code == 0, r.output
    assert outcomes(home) == [("critic", Outcome(task_id="task-7", confidence_milli=700, score_milli=800,
                                                 success=True, subject_id="writer"))]

    h = Home.open(home)
    log = h.open_log()
    try:
        r_, store, _ = open_runner(h, "reputation", log)
        try:
            r_.run_until_caught_up()
        finally:
            store.close()
    finally:
        log.close()
    from processors import get
    from processors.runtime.store import Store

    store = Store(state_file(h, "reputation"), get("reputation")().views, read_only=True)
    try:
        rows = store.con.execute("SELECT issuer, subject, counted FROM trust_history").fetchall()
    finally:
        store.close()
    assert rows and all(subject == "writer" and counted for _, subject, counted in rows)
