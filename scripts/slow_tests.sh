#!/usr/bin/env bash
# The long runs the default suite leaves out (`-m "not slow"` in pyproject.toml): processor and emitter kill runs,
# trusted time across every batch boundary and crash point, the fault simulation, the broker forms of the sharding
# kill tests and the consumer-group rebalance, and the other tests marked `slow`.
#   scripts/slow_tests.sh            # all of them (about 5 minutes on a 2-core machine)
#   scripts/slow_tests.sh -k crash   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pytest -q -m slow "$@"
