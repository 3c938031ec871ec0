#!/usr/bin/env bash
# Create (or reuse) ./.venv and install regnet-zoo with the given extras, e.g. `scripts/setup_env.sh test`.
# torch is asked for with the project's range; pip's own configuration decides the build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch, torchvision" 2>/dev/null || python -m pip install -q "torch>=2.4" "torchvision>=0.19"
if [ -n "$extras" ]; then python -m pip install -q -e ".[$extras]"; else python -m pip install -q -e .; fi
