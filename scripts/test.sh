#!/usr/bin/env bash
# The README's test command: installs what it needs into ./.venv, lints, runs the whole test suite.
# Fails when a test fails and when no test is collected (pytest exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
# shellcheck disable=SC1091
. .venv/bin/activate
ruff check regnet_zoo tests benchmarks
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "scripts/test.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
