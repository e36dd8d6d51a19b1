"""One processor process: ``python -m processors.host.worker NAME --home DIR [--log URL] [--until-caught-up]``.

Started by ``tokenledger run`` (one per processor); SIGTERM/SIGINT finish the current batch and exit 0.
A ``LedgerError`` ends it with the exit code ``ledger.errors.exit_code_for`` gives it (as for ``tokenledger``).
"""

from __future__ import annotations

import argparse
import sys

from ledger.errors import LedgerError, exit_code_for
from ledger.sdk.home import Home, resolve_home, resolve_log_url
from processors.host.service import serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="processors.host.worker")
    ap.add_argument("name")
    ap.add_argument("--home")
    ap.add_argument("--log")
    ap.add_argument("--until-caught-up", action="store_true")
    ap.add_argument("--max-records", type=int, default=None, help="records per batch (default: the runtime's)")
    ap.add_argument("--crash-at",
                    help="fault injection for crash tests: POINT:N (see processors.host.service.crash_hook)")
    a = ap.parse_args(argv)
    try:
        home = Home.open(resolve_home(a.home))
        log = home.open_log(resolve_log_url(a.log, home))
        try:
            return serve(home, a.name, log, exit_when_caught_up=a.until_caught_up, crash_at=a.crash_at,
                         max_records=a.max_records)
        finally:
            log.close()
    except LedgerError as e:
        print(f"{a.name}: error: {e}", file=sys.stderr)
        return int(exit_code_for(e))  # the CLI's table: a missing home is 3, an unreachable log 4


if __name__ == "__main__":
    sys.exit(main())
