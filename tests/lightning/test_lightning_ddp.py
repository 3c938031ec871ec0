"""DDP with 2 CPU processes (gloo) through `regnet-zoo fit`: the LR follows the global batch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from regnet_zoo.lightning import LrSchedule

RUN = """
model:
  model: {{type: regnet, depth: 4, w0: 8, wa: 8.0, wm: 2.0, group_width: 8}}
  base_lr: 0.1
  warmup_epochs: 0.5
  schedule_epochs: 1
data:
  class_path: regnet_zoo.lightning.DigitsDataModule
  init_args: {{image_size: 16, batch_size: 16}}
trainer:
  max_epochs: 1
  limit_train_batches: 4
  limit_val_batches: 2
  log_every_n_steps: 1
  accelerator: cpu
  devices: 2
  strategy: ddp
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
"""


def test_ddp_two_cpu_processes_scale_the_lr_with_the_global_batch(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(RUN.format(root=tmp_path / "run"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "regnet_zoo", "fit", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # 16 per device x 2 processes = global batch 32 -> LR 0.1 x 32 / 128 = 0.025
    assert "global batch 32 (16 per device x 2 devices x 1 nodes x 1 accumulated) = 0.025" in out
    assert "Trained custom config for 1 epochs (4 steps)" in out  # 4 steps: each process saw its own shard
    rows = list(csv.DictReader(open(next((tmp_path / "run" / "logs").glob("version_*/metrics.csv")))))
    lrs = {int(r["step"]): float(r["train/lr"]) for r in rows if r.get("train/lr")}
    schedule = LrSchedule(steps_per_epoch=4, max_epoch=1, warmup_epochs=0.5)
    assert sorted(lrs) == [0, 1, 2, 3]
    for step, lr in lrs.items():
        assert lr == pytest.approx(0.025 * schedule(step), rel=1e-6), step
