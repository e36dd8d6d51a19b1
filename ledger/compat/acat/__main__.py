"""``python -m ledger.compat.acat run.json | run-dir ...``: the reference's module command line
(``ledger.compat.acat.cli.main``)."""

from ledger.compat.acat.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
