"""Writer process for tests/test_crash.py: emits events i = start.. with idempotency keys, flushes
every few events and prints "ACK i" once everything up to i is durably appended."""

import sys

from ledger import Emitter
from ledger.testing.homes import T0

home, agent, start, end, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
with Emitter.open(agent, home=home, batch_size=max(1, every // 2), background_flush=False) as em:
    print(f"HEAD {em.head.seq}", flush=True)
    for i in range(start, end):
        em.action("step", cost_weight=1, idempotency_key=f"k{i}", event_time_us=T0 + i)
        if (i + 1) % every == 0 or i == end - 1:
            em.flush()
            print(f"ACK {i}", flush=True)
print("DONE", flush=True)
