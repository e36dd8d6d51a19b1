"""One racing agent for tests/test_budgets_processor.py, as its own process with its own key and
chain, appending to the same log as the other racers.

    budget_racer.py HOME AGENT ATTEMPTS reserve   reserve 3 units of project "shared", ATTEMPTS times
    budget_racer.py HOME AGENT ATTEMPTS commit    commit every reservation the processor granted
                                                  (read from the published view: the producer's
                                                  protocol is reserve → wait for the verdict → spend
                                                  → commit)
"""

from __future__ import annotations

import sys

from ledger.sdk.emitter import Emitter
from ledger.sdk.views import reservation
from ledger.testing.homes import T0  # the test's own (the environment carries it here)
from ledger.wire.events import Context

UNITS = 3  # per reservation


def main(home: str, agent: str, attempts: int, phase: str) -> None:
    with Emitter.open(agent, home=home, context=Context(org="acme", project="shared"), batch_size=1,
                      linger_ms=0) as em:
        for i in range(attempts):
            rid = f"{agent}-{i}"
            if phase == "reserve":
                # every reserve at the same event time: only the log order decides who gets the budget
                em.reserve(rid, "action", UNITS, scope="project", scope_id="shared", event_time_us=T0 + 10_000)
                em.flush()
            else:
                row = reservation(home, rid, agent)
                if row is not None and row["status"] == "reserved":
                    em.commit(rid, "action", UNITS, scope="project", scope_id="shared", event_time_us=T0 + 10_001 + i)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
