#!/usr/bin/env python3
"""Release the current composed schemas: write schemas/released/<Type>-<fingerprint>.json.

Run after an allowed schema change (new field with a default, new record in a union). It refuses a
change that breaks the evolution rules against any released schema. Readers resolve writer schemas
by fingerprint among the released files, so every schema that was ever written to a log must stay.

    python scripts/release_schemas.py          # release (idempotent)
    python scripts/release_schemas.py --check  # exit 1 if the current schemas are not released
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ledger.wire import schemas

ROOT = Path(__file__).resolve().parent.parent
RELEASED = ROOT / "schemas" / "released"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    RELEASED.mkdir(parents=True, exist_ok=True)
    status = 0
    for name, cur in schemas.current().items():
        target = RELEASED / schemas.released_file_name(cur)
        for old_file in sorted(RELEASED.glob(f"{name}-*.json")):
            old = json.loads(old_file.read_text())
            problems = schemas.evolution_problems(old, cur.source)
            if problems:
                print(f"{name}: breaks the evolution rules against {old_file.name}:", *problems, sep="\n  ")
                status = 1
        if target.exists():
            print(f"{name}: released ({target.name})")
        elif check:
            print(f"{name}: NOT released ({target.name}); run python scripts/release_schemas.py")
            status = 1
        elif status == 0:
            target.write_text(json.dumps(cur.source, indent=1, sort_keys=True) + "\n")
            print(f"{name}: released now ({target.name})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
