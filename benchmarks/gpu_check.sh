#!/usr/bin/env bash
# Issue 12, item 5: the GPU check, one prepared script (about 5-8 minutes on one GPU, never run yet: no GPU was
# lent to the task that wrote it).
#   1. benchmarks/gpu_check.py: bf16 autocast inference (batch 256) and training steps (batch 128) of RegNetX-8.0GF,
#      RegNetY-4.0GF (ours vs timm, same weights) and EfficientNet-B5 @456 (timm), NCHW / channels_last,
#      eager / torch.compile -> $OUT_DIR/gpu-check-cuda.json
#   2. a short `regnet-zoo fit` of the digits demo with --trainer.accelerator gpu --trainer.precision bf16-mixed
#      -> $OUT_DIR/gpu-check-fit-cuda.json (exit status, wall time, validation top-1)
# Usage: bash benchmarks/gpu_check.sh [--cpu-smoke]
#   --cpu-smoke: the same steps on the CPU at a tiny size (1 model, batch 2, 32 px; a 2-batch fit), outputs
#   *-cpu-smoke.json; what the test suite runs. Env: PYTHON (default python), OUT_DIR (default benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-benchmarks/results}
mkdir -p "$OUT"
if [[ "${1:-}" == "--cpu-smoke" ]]; then
  TAG=cpu-smoke; BENCH=(--cpu-smoke); FIT=(--trainer.accelerator cpu --trainer.precision bf16-mixed
    --trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 2)
elif [[ $# -eq 0 ]]; then
  TAG=cuda; BENCH=(); FIT=(--trainer.accelerator gpu --trainer.devices 1 --trainer.precision bf16-mixed
    --trainer.max_epochs 2)
else
  echo "usage: $0 [--cpu-smoke]" >&2; exit 2
fi
"$PY" benchmarks/gpu_check.py "${BENCH[@]}" --json "$OUT/gpu-check-$TAG.json"
RUN_DIR=$(mktemp -d)
trap 'rm -rf "$RUN_DIR"' EXIT
"$PY" - "$OUT/gpu-check-fit-$TAG.json" "$RUN_DIR" "${FIT[@]}" <<'PYEOF'
import json, subprocess, sys, time
from pathlib import Path
from regnet_zoo.fileio import atomic_write

out, run_dir, fit_args = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
cmd = [sys.executable, "-m", "regnet_zoo", "fit", "--config", "recipes/demo_digits.yaml",
       "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false", *fit_args]
start = time.perf_counter()
proc = subprocess.run(cmd, capture_output=True, text=True)
wall = time.perf_counter() - start
metrics = {}
for path in sorted(run_dir.rglob("metrics.csv")):  # Lightning's CSV logger, if the recipe's logger writes one
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    for line in lines[1:]:
        for k, v in zip(head, line.split(",")):
            if v:
                metrics[k] = float(v) if k != "epoch" else int(float(v))
report = dict(command=" ".join(["regnet-zoo", *cmd[3:4], *fit_args]), returncode=proc.returncode,
              wall_s=wall, last_metrics=metrics, stderr_tail=proc.stderr[-2000:])
atomic_write(out, json.dumps(report, indent=1))
print(f"wrote {out}: fit exit {proc.returncode} in {wall:.0f} s, metrics {metrics}")
sys.exit(proc.returncode)
PYEOF
