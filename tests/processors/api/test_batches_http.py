"""``POST /v1/batches`` over real HTTP on loopback, against a real ``tokenledger serve`` process on a real home:
a client signs its own batches (``support.signing``), the service appends what readers accept and refuses the rest
as problem+json with the readers' codes, leaving the log unchanged. One test sends with ``curl`` and then lets the
journal processor read the log: the event is there, accepted, nothing quarantined."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.econ import rows, run
from support.serving import audit_clean, ends, problem
from support.signing import Client, ids_of

from ledger import limits
from ledger.integrity.chain import GENESIS
from ledger.integrity.keys import SigningKey
from ledger.log import read_all
from ledger.sdk.home import Home
from ledger.testing.homes import T0, make_home
from processors.api.batches import BATCH_MEDIA
from processors.testing.serve import Served, running_service

PROBLEM = "application/problem+json"
AGENTS = ("alice", "bob", "carol", "dave", "erin")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return make_home(tmp_path_factory.mktemp("batches") / "home", agents=AGENTS)


@pytest.fixture(scope="module")
def served(home: Home) -> Iterator[Served]:
    with running_service(home.path) as s:
        yield s


def post(served: Served, raw: bytes, token: str | None = None, *, media: str = BATCH_MEDIA) -> httpx.Response:
    return httpx.post(served.url + "/v1/batches", content=raw, headers={**served.auth(token), "Content-Type": media},
                      timeout=60)




def records_of(home: Home, signer: str) -> list[bytes]:
    log = home.open_log()
    try:
        return [r.value for r in read_all(log, home.topic) if r.key == signer.encode()]
    finally:
        log.close()


def ingested(served: Served) -> dict[str, float]:
    """The service's count of events received on this route, by outcome."""
    text = httpx.get(served.url + "/metrics", headers=served.auth(), timeout=60).text
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "tokenledger_ingest_events_total" and s.labels["route"] == "batches"}



def test_a_signed_batch_is_appended_and_its_retry_is_answered_with_the_original(home, served):
    alice = Client(home.load_key("alice"))
    token = served.token("alice", scopes=("ingest",))
    raw = alice.batch(3)
    counted = ingested(served)
    r = post(served, raw, token)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first == {"topic": home.topic, "partition": 0, "offset": first["offset"], "signer_id": "alice",
                     "first_seq": 1, "last_seq": 3, "event_ids": list(ids_of(raw)), "duplicate": False}
    before = ends(home)
    again = post(served, raw, token)
    assert again.status_code == 200 and again.json() == {**first, "duplicate": True}
    assert ends(home) == before and records_of(home, "alice") == [raw]
    now = ingested(served)
    assert (now["accepted"] - counted.get("accepted", 0), now["duplicate"] - counted.get("duplicate", 0)) == (3, 3)
    nxt = post(served, alice.batch(1, t=T0 + 2_000), token)  # an operator token may submit for anyone
    assert nxt.status_code == 201 and nxt.json()["first_seq"] == 4
    assert post(served, alice.batch(1, t=T0 + 3_000)).json()["first_seq"] == 5
    audit_clean(home)


def test_refusals_are_problems_with_the_readers_codes_and_leave_the_log_unchanged(home, served):
    bob = Client(home.load_key("bob"))
    token = served.token("bob", scopes=("ingest",))
    assert post(served, bob.batch(1), token).status_code == 201
    before = ends(home)
    counted = ingested(served).get("refused", 0)
    forged = bob.batch(1, t=T0 + 2_000, sign_with=home.load_key("carol"), advance=False)
    assert problem(post(served, forged, token), 422, "bad_signature")["appended"] is False
    body = problem(post(served, bob.batch(1, t=T0 + 2_000, head=GENESIS, advance=False), token), 422, "fork")
    assert (body["expected"], body["actual"]) == (2, 1)
    skipped = bob.batch(1, t=T0 + 2_000, head=type(bob.head)(bob.head.seq + 1, bob.head.hash), advance=False)
    problem(post(served, skipped, token), 422, "sequence_gap")
    problem(post(served, b"not a batch at all", token), 422, "bad_schema")
    stranger = Client(SigningKey.generate("mallory"))
    problem(post(served, stranger.batch(1)), 422, "unknown_key")
    problem(post(served, Client(home.operator_key()).batch(1)), 409, "chain_conflict")
    assert ends(home) == before
    assert ingested(served)["refused"] - counted == 5  # one event in each refused batch; the garbage holds none


def test_an_agent_token_submits_only_its_own_agents_batches(home, served):
    carol = Client(home.load_key("carol"))
    before = ends(home)
    dave_token = served.token("dave", scopes=("ingest",))
    body = problem(post(served, carol.batch(1, advance=False), dave_token), 403, "forbidden_agent")
    assert body["value"] == "carol"
    read_only = served.token("carol", scopes=("read",))
    problem(post(served, carol.batch(1, advance=False), read_only), 403, "missing_scope")
    problem(post(served, carol.batch(1, advance=False), "tlk_000000000000_" + "A" * 43), 401, "unauthorized")
    assert ends(home) == before
    assert post(served, carol.batch(1), served.token("carol", scopes=("ingest",))).status_code == 201


def test_content_type_and_size_are_checked_before_the_body_is_used(home, served):
    dave = Client(home.load_key("dave"))
    before = ends(home)
    raw = dave.batch(1, advance=False)
    problem(post(served, raw, media="application/octet-stream"), 415, "unsupported_media_type")
    problem(post(served, raw, media="application/json"), 415, "unsupported_media_type")
    over = b"\x00" * (limits.MAX_RECORD_BYTES + 1)
    body = problem(post(served, over), 413, "oversized")
    assert body["limit"] == limits.MAX_RECORD_BYTES and body["read_bytes"] == 0  # refused from Content-Length

    sent = 8 * limits.MAX_RECORD_BYTES

    def chunks() -> Iterator[bytes]:  # no Content-Length: read until it passes the limit, not to the end
        for _ in range(sent // 65_536):
            yield b"\x00" * 65_536

    r = httpx.post(served.url + "/v1/batches", content=chunks(), timeout=60,
                   headers={**served.auth(), "Content-Type": BATCH_MEDIA})
    body = problem(r, 413, "oversized")
    assert limits.MAX_RECORD_BYTES < body["read_bytes"] < sent
    assert ends(home) == before
    assert post(served, raw + b"", media=BATCH_MEDIA + "; charset=binary").status_code == 201  # parameters ignored


def test_a_batch_sent_with_curl_is_read_by_the_journal_as_accepted(home, served, tmp_path: Path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    erin = Client(home.load_key("erin"))
    raw = erin.batch(2, op="curl")
    body_file = tmp_path / "batch.bin"
    body_file.write_bytes(raw)
    token = served.token("erin", scopes=("ingest",))
    out = subprocess.run(["curl", "-sS", "-o", str(tmp_path / "answer.json"), "-w", "%{http_code}",
                          "-H", f"Authorization: Bearer {token}", "-H", f"Content-Type: {BATCH_MEDIA}",
                          "--data-binary", f"@{body_file}", served.url + "/v1/batches"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout == "201", (tmp_path / "answer.json").read_text()
    import json

    answer = json.loads((tmp_path / "answer.json").read_text())
    assert answer["event_ids"] == list(ids_of(raw)) and answer["duplicate"] is False
    run(home, "journal")
    got = rows(home, "journal", "SELECT event_id, signer_id, seq, operation, log_offset FROM events "
                                "WHERE signer_id = 'erin' ORDER BY seq")
    assert got == [(ids_of(raw)[0], "erin", 1, "curl-0", answer["offset"]),
                   (ids_of(raw)[1], "erin", 2, "curl-1", answer["offset"])]
    assert rows(home, "journal", "SELECT count(*) FROM quarantine") == [(0,)]
    audit_clean(home)
