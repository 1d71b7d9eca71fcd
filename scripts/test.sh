#!/usr/bin/env bash
# Install what is needed and run the whole test suite (the tests start their own sandbox server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check                        # lint first: configured in pyproject.toml [tool.ruff]
.venv/bin/mypy                              # types of the pure core: the files in [tool.mypy]
.venv/bin/dg check defs --use-active-venv   # the code location loads, as `dg dev` would load it
exec .venv/bin/python -m pytest cbzoho_pipeline_tests "$@"
