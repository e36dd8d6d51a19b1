"""Crash runs on both log backends (slow): emitter and processor processes killed with SIGKILL, through
the same harness as ``scripts/crash.py`` (processors/testing/crash.py), with smaller counts.

The full counts (60 processor and 30 emitter kills per backend by default) are the script's job; this
test keeps every change set honest on both backends: the emitter on Kafka, the allocations processor
(which publishes derived events through its outbox) killed alongside the journal, and the figures'
own arithmetic (a run that kills nothing fails).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.testing.crash import crash_home, emitter_kills, processor_kills

BACKENDS = [pytest.param("sqlite"), pytest.param("kafka", marks=pytest.mark.kafka)]
EMITTER_KILLS = 10
PROCESSOR_KILLS = 8


def _url(backend: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("kafka_url") if backend == "kafka" else None


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_emitter_killed_loses_and_doubles_nothing_acknowledged(backend: str, tmp_path: Path,
                                                               request: pytest.FixtureRequest) -> None:
    home = crash_home(tmp_path / "home", _url(backend, request), agents=("alice",))
    fig = emitter_kills(home, EMITTER_KILLS, total=5_000, seed=7)
    assert fig.kills == EMITTER_KILLS and fig.acknowledged > 0, fig
    assert (fig.lost, fig.duplicated, fig.chain_ok, fig.on_log) == (0, 0, True, 5_000), fig
    assert fig.ok


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_processors_killed_lose_and_double_nothing(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    home = crash_home(tmp_path / "home", _url(backend, request))
    fig = processor_kills(home, PROCESSOR_KILLS, seed=11, names=("journal", "allocations"))
    assert fig.kills == PROCESSOR_KILLS and fig.accepted > 0 and fig.bad_records > 0, fig
    assert (fig.lost, fig.duplicated, fig.in_view) == (0, 0, fig.accepted), fig
    assert fig.dead_letters_once and fig.replay_equal, fig
    assert fig.ok
