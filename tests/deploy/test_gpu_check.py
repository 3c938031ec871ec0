"""benchmarks/gpu_check.sh: its CPU-only path (the GPU run needs a lent device)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_cpu_smoke(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OUT_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"], env=env, check=True,
                   timeout=900, capture_output=True)
    bench = json.loads((tmp_path / "gpu-check-cpu-smoke.json").read_text())
    cases = {(r["mode"], r["case"]) for r in bench["rows"]}
    assert {m for m, _ in cases} == {"infer", "train"}
    assert {c for _, c in cases} == {f"regnetx_200mf/{impl}@{lay}" for impl in ("zoo", "timm")
                                     for lay in ("nchw", "nhwc")}
    assert all(r["images_per_s"] > 0 and r["flop_s"] > 0 for r in bench["rows"])
    fit = json.loads((tmp_path / "gpu-check-fit-cpu-smoke.json").read_text())
    assert fit["returncode"] == 0 and "bf16-mixed" in fit["command"] and "val/acc1" in fit["last_metrics"]


def test_gpu_check_rejects_unknown_arguments(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus"], capture_output=True,
                          env={**os.environ, "OUT_DIR": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2 and not list(tmp_path.iterdir())
