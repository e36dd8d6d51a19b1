"""Run a Tansu broker in the foreground for trying the Kafka path: prints its kafka:// URL; Ctrl-C stops it.

IN-MEMORY, NOT DURABLE: every topic and record is gone when it stops. Production runs Apache Kafka
(compose/README.md). Same as `tokenledger broker`.

    python scripts/broker.py [--port PORT]
"""

from __future__ import annotations

import argparse
import sys

from ledger.errors import LedgerError
from ledger.testing.broker import run_foreground


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=None, help="loopback port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        run_foreground(args.port)
    except LedgerError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
