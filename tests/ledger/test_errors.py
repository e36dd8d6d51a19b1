"""The one error tree: every LedgerError lives in ledger.errors and has an exit code of its own;
ValidationError is a ValueError; a rejection knows the record it is about."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import ledger
import processors
from ledger import errors
from ledger.errors import (
    EXIT_CODES,
    ExitCode,
    HomeError,
    LedgerError,
    LogError,
    RejectCode,
    RejectError,
    ValidationError,
    exit_code_for,
)
from ledger.integrity.keyring import KeyRing
from ledger.integrity.verify import Verifier, Where
from ledger.wire.timefmt import parse_time
from processors.host import worker


def _all_ledger_errors() -> set[type[LedgerError]]:
    """Every LedgerError subclass defined anywhere in ledger or processors (all modules imported first)."""
    for package in (ledger, processors):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    found: set[type[LedgerError]] = set()
    todo: list[type[LedgerError]] = [LedgerError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return {c for c in found if c.__module__.split(".")[0] in ("ledger", "processors")}


def test_every_ledger_error_is_defined_in_ledger_errors_and_has_its_own_exit_code() -> None:
    classes = _all_ledger_errors()
    # the tree is what the task says it is (a class that disappeared would be a silent change too)
    assert {c.__name__ for c in classes} >= {"LedgerError", "ValidationError", "KeyFileError", "HomeError",
                                             "RejectError", "ChainForkError", "LogError", "EconomicsError",
                                             "BudgetRefused", "AdmissionError", "StoreError", "RunnerFailedError",
                                             "RunnerInvariantError", "RecordTooLargeError",
                                             "IdempotencyConflictError", "IdempotencyWindowError"}
    outside = sorted(f"{c.__module__}.{c.__qualname__}" for c in classes if c.__module__ != "ledger.errors")
    assert not outside, f"define these in ledger/errors.py: {outside}"
    unmapped = sorted(c.__name__ for c in classes if c not in EXIT_CODES)
    assert not unmapped, f"give these a row in ledger.errors.EXIT_CODES: {unmapped}"
    assert set(EXIT_CODES) == classes  # no row for a class that no longer exists
    for cls in classes:
        assert isinstance(EXIT_CODES[cls], ExitCode)


def test_the_old_homes_of_the_moved_errors_still_export_them() -> None:
    from ledger.economics.budget import BudgetRefused
    from ledger.sdk.views import AdmissionError  # admission's reader half now lives in ledger.sdk.views
    from processors.runtime.runner import RunnerFailedError, RunnerInvariantError
    from processors.runtime.store import StoreError

    assert (BudgetRefused, AdmissionError, StoreError) == (errors.BudgetRefused, errors.AdmissionError,
                                                           errors.StoreError)
    assert (RunnerFailedError, RunnerInvariantError) == (errors.RunnerFailedError, errors.RunnerInvariantError)


def test_exit_codes_keep_their_numbers() -> None:
    assert {c.name: c.value for c in ExitCode} == {"OK": 0, "REJECTED": 1, "BAD_INPUT": 2, "HOME": 3, "LOG": 4}
    expected = {"LedgerError": 2, "ValidationError": 2, "KeyFileError": 3, "HomeError": 3, "RejectError": 1,
                "ChainForkError": 3, "LogError": 4, "EconomicsError": 2, "BudgetRefused": 2, "AdmissionError": 2,
                "StoreError": 2, "RunnerFailedError": 2, "RunnerInvariantError": 2,
                "RecordTooLargeError": 2, "HomeBusyError": 3, "LogRewoundError": 4,
                "IdempotencyConflictError": 2, "IdempotencyWindowError": 2,
                "ViewIntegrityError": 1, "SchemaRegistryError": 4, "FlatPublisherFailed": 4,
                "ShardingRefused": 2}
    assert {c.__name__: int(code) for c, code in EXIT_CODES.items()} == expected


def test_exit_code_for_uses_the_nearest_row() -> None:
    class Unlisted(HomeError):  # not in the table: inherits its parent's code
        """A subclass the exit-code table does not name."""

    assert exit_code_for(Unlisted("x")) is ExitCode.HOME
    assert exit_code_for(LogError("broker down")) is ExitCode.LOG
    assert exit_code_for(RejectError(RejectCode.FORK, "x")) is ExitCode.REJECTED
    assert exit_code_for(LedgerError("x")) is ExitCode.BAD_INPUT


def test_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid since=") as caught:
        parse_time("yesterday", "since")
    assert isinstance(caught.value, ValidationError)
    assert (caught.value.field, caught.value.value) == ("since", "yesterday")

    def user_code() -> str:
        try:
            parse_time("2026-13-45")
        except ValueError as e:  # how a caller who knows only the standard library writes it
            return type(e).__name__
        return "not raised"

    assert user_code() == "ValidationError"


def test_reject_error_at_returns_a_new_positioned_error_and_leaves_the_original() -> None:
    e = RejectError(RejectCode.BAD_SIGNATURE, "batch signature does not verify", signer_id="alice")
    assert not e.positioned and e.topic is None and "offset" not in e.evidence
    placed = e.at(topic="ledger.events", partition=2, offset=41)
    assert placed is not e and type(placed) is RejectError
    assert (placed.topic, placed.partition, placed.offset, placed.positioned) == ("ledger.events", 2, 41, True)
    assert placed.evidence == {"code": "bad_signature", "signer_id": "alice", "topic": "ledger.events",
                               "partition": 2, "offset": 41}
    assert (placed.code, placed.reason, placed.message) == (e.code, e.reason, e.message)
    assert not e.positioned and "offset" not in e.evidence  # the original is unchanged
    # a position already known is kept: the reader that took the record from the log placed it
    assert placed.at(topic="elsewhere", partition=0, offset=0).offset == 41


def test_a_record_rejected_by_the_verifier_names_its_position() -> None:
    with pytest.raises(RejectError) as caught:
        Verifier(KeyRing()).check_record(b"\x00garbage", Where("ledger.events", 1, 7))
    e = caught.value
    assert e.positioned and (e.topic, e.partition, e.offset) == ("ledger.events", 1, 7)
    assert (e.evidence["topic"], e.evidence["partition"], e.evidence["offset"]) == ("ledger.events", 1, 7)


def test_the_worker_exits_through_the_same_table(tmp_path) -> None:
    # a home that is not there: HomeError, exit 3 as `tokenledger` gives (it used to be a bare 2)
    assert worker.main(["journal", "--home", str(tmp_path / "nohome")]) == ExitCode.HOME == 3


def test_fail_prints_evidence_and_exits_with_the_error_code(capsys) -> None:
    import typer

    from ledger.cli.output import fail

    with pytest.raises(typer.Exit) as ex:
        fail(LogError("broker unreachable", bootstrap="127.0.0.1:1", hint="start it"))
    assert ex.value.exit_code == ExitCode.LOG
    printed = capsys.readouterr().err
    assert "error: broker unreachable" in printed and "bootstrap: 127.0.0.1:1" in printed and "hint: start it" in printed


def test_errors_module_defines_no_class_outside_the_tree_but_exit_code() -> None:
    own = {n for n, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == "ledger.errors"}
    assert own == {c.__name__ for c in EXIT_CODES} | {"RejectCode", "ExitCode"}
