"""The replay, digest and status use cases, without the CLI: typed, frozen results that say what the
CLI prints (equal digests, the signed-checkpoint verdict, who never ran)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.econ import econ_home, run

from ledger.errors import ValidationError
from ledger.testing.homes import fill
from processors import REGISTRY, get
from processors.host import service
from processors.runtime.store import DIGEST_ALGORITHM, Store
from processors.services import replay as replay_service


def test_replay_rebuilds_the_live_digest_and_reports_typed(tmp_path):
    h = econ_home(tmp_path)
    fill(h, tasks=6, batch_size=4)
    with pytest.raises(ValidationError) as e:
        replay_service.replayable(h, "journal")  # never ran: nothing to compare with
    assert e.value.field == "processor" and e.value.value == "journal"
    run(h, "journal")
    live = replay_service.replayable(h, "journal")
    assert live.digest is not None and live.source == "state file" and live.records > 0
    assert live == replay_service.digest(h, "journal")
    log = h.open_log()
    try:
        steps: list[int] = []
        result = replay_service.replay(h, "journal", log, live, keep=False, progress=steps.append)
    finally:
        log.close()
    assert result.equal and result.rebuilt.digest == live.digest and result.rebuilt.positions == live.positions
    assert sum(steps) == live.records  # progress saw every record once
    assert result.state_checkpoint.match is None  # run inline: nothing signed at these positions
    assert result.rebuilt.file is not None and not (tmp_path / result.rebuilt.file).parent.exists()  # not kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.processor = "other"  # type: ignore[misc]
    doc = result.to_dict()
    assert doc["equal"] is True and doc["live"]["source"] == "state file" and "file" in doc["replay"]
    assert json.loads(json.dumps(doc, default=str))["replay"]["digest"] == live.digest


def test_status_names_who_ran_and_who_never_did(tmp_path):
    h = econ_home(tmp_path)
    rows = replay_service.status(h)
    assert [r.processor for r in rows] == sorted(REGISTRY)
    assert all(r.state == replay_service.NEVER_RUN and r.to_dict() == {"processor": r.processor, "state": "never run"}
               for r in rows)
    service.write_status(h, "journal", {"state": "stopped", "pid": 1, "positions": {"ledger.events/0": 3}, "lag": 0})
    journal = {r.processor: r for r in replay_service.status(h)}["journal"]
    assert journal.state == "stopped" and journal.positions == {"ledger.events/0": 3} and journal.lag == 0
    assert journal.updated_s_ago is not None and "updated_s_ago" in journal.to_dict()
    service.write_status(h, "notary", {"state": "running", "pid": 2**22 + 12345})  # no such process
    assert {r.processor: r for r in replay_service.status(h)}["notary"].state == "dead"


def test_a_digest_published_by_an_older_algorithm_is_not_replayed_against(tmp_path):
    h = econ_home(tmp_path)
    fill(h, tasks=2, batch_size=4)
    run(h, "journal")
    # the journal "running" (this process holds its file): the live digest is what it last published,
    # here by a version with the first digest algorithm (bare hex)
    held = Store(service.state_file(h, "journal"), get("journal")().views)
    try:
        out = h.views_dir("journal")
        out.mkdir(parents=True, exist_ok=True)
        (out / "_state.json").write_text(json.dumps({"positions": {"ledger.events/0": 1},
                                                     "digest": {"digest": "ab" * 32, "tables": {}}}))
        assert replay_service.digest(h, "journal").source == "published"
        with pytest.raises(ValidationError) as e:
            replay_service.replayable(h, "journal")
        assert e.value.field == "digest" and e.value.value == "ab" * 32 and DIGEST_ALGORITHM in e.value.reason
    finally:
        held.close()
    assert replay_service.replayable(h, "journal").digest.startswith(f"{DIGEST_ALGORITHM}:")  # from the file again
