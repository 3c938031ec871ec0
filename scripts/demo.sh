#!/usr/bin/env bash
# The README's main job: installs into ./.venv, then trains a small RegNet on the embedded digits data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh train
# shellcheck disable=SC1091
. .venv/bin/activate
regnet-zoo fit --config recipes/demo_digits.yaml "$@"
