"""One processor process: ``python -m processors.host.worker NAME --home DIR [--log URL] [--until-caught-up]``.

Started by ``tokenledger run`` (one per processor); SIGTERM/SIGINT finish the current batch and exit 0.
A ``LedgerError`` ends it with the exit code ``ledger.errors.exit_code_for`` gives it (as for ``tokenledger``),
after writing it to the status file as the processor's last error (``tokenledger status`` shows it).

With ``--supervisor-pid PID`` it dies with its supervisor, however the supervisor ends (SIGKILL too): on
Linux the kernel sends it SIGTERM when the parent dies (``PR_SET_PDEATHSIG``); everywhere, a watchdog
thread sees its parent pid change (the orphan is re-parented) within ``PARENT_POLL_S`` and sends the same
SIGTERM. Either way it finishes its batch and exits; one stuck longer than ``ORPHAN_GRACE_S`` exits hard.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

from ledger.errors import LedgerError, exit_code_for
from ledger.sdk.home import Home, resolve_home, resolve_log_url
from processors.host.service import note_failure, serve
from processors.runtime.shards import Shard, parse_shard

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 0.5  # how often the watchdog checks that the supervisor is still its parent
ORPHAN_GRACE_S = 30.0  # an orphan still running this long after its SIGTERM exits without finishing its batch
ORPHAN_EXIT_CODE = 143  # 128 + SIGTERM, as a shell reports a process ended by it


def die_with_parent(parent_pid: int) -> None:
    """Exit (through SIGTERM, so the current batch finishes) once ``parent_pid`` is no longer our parent."""
    if sys.platform.startswith("linux"):
        # best effort (a libc without prctl, a sandbox refusing it): the watchdog below covers a failure
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before the signal was armed: nobody would send it
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_GRACE_S)
    os._exit(ORPHAN_EXIT_CODE)  # still here: stuck in a call that ignores the stop flag; the state file is safe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="processors.host.worker")
    ap.add_argument("name")
    ap.add_argument("--home")
    ap.add_argument("--log")
    ap.add_argument("--until-caught-up", action="store_true")
    ap.add_argument("--supervisor-pid", type=int, default=None, help="exit when this process is no longer the parent")
    ap.add_argument("--max-records", type=int, default=None, help="records per batch (default: the runtime's)")
    ap.add_argument("--shard", default=None, help="I/N: run instance I of N of a sharded processor")
    ap.add_argument("--crash-at",
                    help="fault injection for crash tests: POINT:N (see processors.host.service.crash_hook)")
    a = ap.parse_args(argv)
    if a.supervisor_pid is not None:
        die_with_parent(a.supervisor_pid)
    home: Home | None = None
    shard: Shard | None = None
    try:
        shard = None if a.shard is None else parse_shard(a.shard)
        home = Home.open(resolve_home(a.home))
        log = home.open_log(resolve_log_url(a.log, home))
        try:
            return serve(home, a.name, log, exit_when_caught_up=a.until_caught_up, crash_at=a.crash_at,
                         max_records=a.max_records, shard=shard)
        finally:
            log.close()
    except LedgerError as e:
        print(f"{a.name}: error: {e}", file=sys.stderr)
        code = int(exit_code_for(e))  # the CLI's table: a missing home is 3, an unreachable log 4
        if home is not None:
            # e.g. the broker is down: the processor never got as far as its own status; say why it is not running
            note_failure(home, a.name, e, exit_code=code, shard=shard)
        return code


if __name__ == "__main__":
    sys.exit(main())
