#!/usr/bin/env bash
# The reference packages' own test suites against ledger.compat.* (see scripts/peer_suites.py).
#   scripts/peer_suites.sh [cwep] [tbc] [acat]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python scripts/peer_suites.py "$@"
