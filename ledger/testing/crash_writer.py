"""The emitter process that crash runs kill (``python -m ledger.testing.crash_writer HOME AGENT START END
EVERY BASE_US``): emits events i = START..END-1 with idempotency keys ``k<i>`` and event times
``BASE_US + i``, flushes every EVERY events and prints ``ACK i`` once everything up to i is durably
appended (the acknowledgement a real agent would act on). Prints ``HEAD seq`` first and ``DONE`` last.

Event times are a fixed base plus i, never the clock: a retry after a kill must rebuild the very same
event, so its idempotency key dedupes it rather than minting a second event.
"""

from __future__ import annotations

import sys

from ledger.sdk.emitter import Emitter


def main(argv: list[str]) -> int:
    home, agent = argv[0], argv[1]
    start, end, every, base_us = (int(a) for a in argv[2:6])
    with Emitter.open(agent, home=home, batch_size=max(1, every // 2), background_flush=False) as em:
        print(f"HEAD {em.head.seq}", flush=True)
        for i in range(start, end):
            em.action("step", cost_weight=1, idempotency_key=f"k{i}", event_time_us=base_us + i)
            if (i + 1) % every == 0 or i == end - 1:
                em.flush()
                print(f"ACK {i}", flush=True)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
