"""The kill test of ``POST /v1/events``: clients post JSON events from several threads while the service process is
killed with SIGKILL, three times over; after each kill the log is read back (every signed batch decoded) and every
event id the service acknowledged (answered 201) is on it exactly once, no event id is on it twice, and the readers'
audit accepts every record. Then a fresh service is sent every batch again, acknowledged or not, with the same
idempotency keys: an acknowledged batch is answered with the same ids and appends nothing, and in the end every event
ever posted is on the log exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
from support.serving import audit_clean

from ledger.log import read_all
from ledger.sdk.home import Home
from ledger.sdk.tokens import TokenStore
from ledger.testing.homes import make_home
from ledger.wire import codec
from processors.testing.serve import Served, running_service

AGENTS = ("alice", "bob")
CLIENTS = 4  # threads posting at once (two per agent: requests for one agent take turns in the service)
EVENTS_PER_POST = 50
KILLS = 3
ACKS_BEFORE_KILL = 12  # acknowledged posts in a round before the kill (clients keep posting until it)


def batch(client: int, n: int) -> dict[str, Any]:
    return {"events": [{"kind": "action", "operation": "llm.call", "provider": "openai", "model": "gpt-4.1",
                        "input_tokens": 1_000 + i, "output_tokens": 10 + n, "cache_read_tokens": i,
                        "idempotency_key": f"c{client}-b{n}-e{i}", "run": f"round-{client}"}
                       for i in range(EVENTS_PER_POST)]}


def on_log(home: Home) -> Counter[str]:
    """How many times each event id is on the events topic (every batch decoded)."""
    log = home.open_log()
    try:
        return Counter(codec.decode_event(raw).event.event_id for r in read_all(log, home.topic)
                       for raw in codec.decode_batch(r.value).events)
    finally:
        log.close()



class Round:
    """Clients posting until the service dies under them."""

    def __init__(self, served: Served, tokens: dict[str, str], sent: dict[tuple[int, int], dict[str, Any]],
                 acked: dict[tuple[int, int], list[str]], start: int) -> None:
        self.served, self.tokens, self.sent, self.acked, self.start = served, tokens, sent, acked, start
        self.lock = threading.Lock()
        self.acks = 0
        self.enough = threading.Event()
        self.unexpected: list[str] = []
        self.cut = 0  # posts the kill cut off mid-request (not refused a connection: already sent)

    def client(self, c: int) -> None:
        agent = AGENTS[c % len(AGENTS)]
        with httpx.Client(timeout=60, headers=self.served.auth(self.tokens[agent])) as http:
            n = self.start
            while True:
                body = batch(c, n)
                with self.lock:
                    self.sent[(c, n)] = body
                try:
                    r = http.post(self.served.url + "/v1/events", json=body)
                except httpx.TransportError as e:
                    with self.lock:  # the service was killed: this post is unacknowledged
                        self.cut += not isinstance(e, httpx.ConnectError)
                    return
                if r.status_code != 201:
                    self.unexpected.append(r.text)
                    self.enough.set()
                    return
                with self.lock:
                    self.acked[(c, n)] = r.json()["event_ids"]
                    self.acks += 1
                    if self.acks >= ACKS_BEFORE_KILL:
                        self.enough.set()
                n += 1

    def run(self) -> None:
        threads = [threading.Thread(target=self.client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        assert self.enough.wait(300), "no acknowledgements"
        self.served.kill()  # SIGKILL, clients still posting
        for t in threads:
            t.join(120)
        assert self.unexpected == []
        assert self.cut >= 1  # the clients never stop posting: the kill lands mid-ingest


def agent_tokens(home: Home) -> dict[str, str]:
    """One ingest token per agent, kept for every round: a retry comes with the token of the first try (the token's
    id is part of each event's context, which an idempotency key promises)."""
    store = TokenStore(home.tokens_file)
    try:
        return {a: store.create(agent=a, scopes=("ingest",), rate_per_s=10_000.0).token for a in AGENTS}
    finally:
        store.close()


def test_every_acknowledged_event_is_on_the_log_exactly_once_after_sigkills(tmp_path):
    home = make_home(tmp_path / "home", agents=AGENTS)
    tokens = agent_tokens(home)
    sent: dict[tuple[int, int], dict[str, Any]] = {}
    acked: dict[tuple[int, int], list[str]] = {}
    for kill in range(KILLS):
        with running_service(home.path) as served:
            Round(served, tokens, sent, acked, start=kill * 1_000).run()
        counts = on_log(home)
        acknowledged = [i for ids in acked.values() for i in ids]
        assert len(acknowledged) == len(set(acknowledged)) >= ACKS_BEFORE_KILL * EVENTS_PER_POST * (kill + 1)
        assert [i for i in acknowledged if counts[i] != 1] == []
        assert [i for i, n in counts.items() if n > 1] == []
        audit_clean(home)

    # every batch again, acknowledged or not: the same ids for the acknowledged ones, nothing appended for them
    with running_service(home.path) as served, httpx.Client(timeout=60) as http:
        for (c, n), body in sorted(sent.items()):
            r = http.post(served.url + "/v1/events", json=body, headers=served.auth(tokens[AGENTS[c % 2]]))
            assert r.status_code == 201, r.text
            got = r.json()
            if (c, n) in acked:
                assert got["event_ids"] == acked[(c, n)]
                assert (got["appended"], got["duplicates"]) == (0, EVENTS_PER_POST)
    counts = on_log(home)
    assert len(counts) == len(sent) * EVENTS_PER_POST and set(counts.values()) == {1}
    audit_clean(home)
