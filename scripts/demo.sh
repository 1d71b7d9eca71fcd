#!/usr/bin/env bash
# Install what is needed, then start the seeded sandbox and the Dagster UI wired to it. Ctrl-C or SIGTERM
# stops every process it started (exec: the signal reaches `cbzoho demo` itself).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export CBZOHO_HOME="${CBZOHO_HOME:-$PWD/.cbzoho_demo}"
exec .venv/bin/cbzoho demo "$@"
