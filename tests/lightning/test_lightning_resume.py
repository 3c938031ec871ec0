"""Resumption: a resumed run equals an uninterrupted one; kill -9 mid-epoch loses at most that epoch."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from regnet_zoo.lightning import DigitsDataModule, RegNetClassifier
from regnet_zoo.lightning.callbacks import PreciseBN
from regnet_zoo.lightning.checkpoint_io import AtomicCheckpointIO


def _fit(tiny_cfg, trainer_kwargs, ckpt_dir: Path, max_epochs: int, ckpt_path: str | None = None, num_workers=0):
    L.seed_everything(0, verbose=False)
    model = RegNetClassifier(tiny_cfg, num_classes=10, schedule_epochs=3, warmup_epochs=1, ema=True, ema_decay=0.9,
                             mixup_alpha=0.2, drop_path_rate=0.1, label_smoothing=0.1, zero_init_last=True)
    dm = DigitsDataModule(image_size=16, batch_size=32, augment=True, num_workers=num_workers)
    kwargs = {**trainer_kwargs, "num_sanity_val_steps": 2}
    trainer = L.Trainer(max_epochs=max_epochs, limit_train_batches=5, limit_val_batches=2,
                        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True), PreciseBN(num_batches=2)],
                        plugins=[AtomicCheckpointIO()], **kwargs)
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize("num_workers", [0, pytest.param(1, marks=pytest.mark.slow)])  # 1: a worker process
def test_resumed_run_equals_uninterrupted(tiny_cfg, trainer_kwargs, tmp_path, num_workers):
    """Same weights, BN statistics, EMA, momentum and LR; with augmentation, MixUp, DropPath, precise BN.

    With a worker process the data order and augmentations of the resumed epoch must also match
    (Lightning alone replays epoch 0's order there: it creates the iterator before ``set_epoch``).
    """
    full, full_trainer = _fit(tiny_cfg, trainer_kwargs, tmp_path / "a", 3, num_workers=num_workers)
    _fit(tiny_cfg, trainer_kwargs, tmp_path / "b", 1, num_workers=num_workers)
    resumed, resumed_trainer = _fit(tiny_cfg, trainer_kwargs, tmp_path / "b", 3, ckpt_path="last",
                                    num_workers=num_workers)
    assert resumed_trainer.global_step == full_trainer.global_step == 15
    sd_full, sd_res = full.state_dict(), resumed.state_dict()
    assert set(sd_full) == set(sd_res) and any(k.startswith("ema.") for k in sd_full)
    for k in sd_full:
        assert torch.equal(sd_full[k], sd_res[k]), k  # weights, BN statistics, EMA
    opt_full, opt_res = full_trainer.optimizers[0].state_dict(), resumed_trainer.optimizers[0].state_dict()
    for i, state in opt_full["state"].items():
        assert torch.equal(state["momentum_buffer"], opt_res["state"][i]["momentum_buffer"])
    s_full, s_res = full_trainer.lr_scheduler_configs[0].scheduler, resumed_trainer.lr_scheduler_configs[0].scheduler
    assert s_full.last_epoch == s_res.last_epoch == 15 and s_full.get_last_lr() == s_res.get_last_lr()


class _RecordLr(L.Callback):
    def __init__(self):
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


def _fit_batch(tiny_cfg, trainer_kwargs, ckpt_dir: Path, batch_size: int, batches: int, max_epochs: int,
               ckpt_path: str | None = None) -> tuple[dict[int, float], list[str], L.Trainer]:
    """base_lr 0.1 per 128, 3-epoch cosine, 1 warmup epoch; returns (LR per step, warnings, trainer)."""
    model = RegNetClassifier(tiny_cfg, num_classes=10, base_lr=0.1, schedule_epochs=3, warmup_epochs=1)
    rec = _RecordLr()
    trainer = L.Trainer(max_epochs=max_epochs, limit_train_batches=batches, limit_val_batches=1,
                        callbacks=[ModelCheckpoint(dirpath=ckpt_dir, save_last=True), rec], **trainer_kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, DigitsDataModule(image_size=16, batch_size=batch_size), ckpt_path=ckpt_path)
    return rec.lrs, [str(w.message) for w in caught if "another LR schedule" in str(w.message)], trainer


def cosine_lr(peak: float, epoch: float, schedule_epochs: float = 3) -> float:
    return peak * 0.5 * (1 + math.cos(math.pi * epoch / schedule_epochs))


def test_resume_with_another_global_batch_applies_this_runs_schedule(tiny_cfg, trainer_kwargs, tmp_path):
    """Epoch 0 at global batch 32 (6 steps, peak 0.025); resumed at batch 16 (12 steps per epoch, peak 0.0125).

    The resumed steps follow the new peak and step length from epoch 1 on, with a warning naming the
    changes; a second resume with the same settings keeps that schedule (saved in the checkpoint).
    """
    lrs0, warned, _ = _fit_batch(tiny_cfg, trainer_kwargs, tmp_path, 32, 6, max_epochs=1)
    assert lrs0[0] == pytest.approx(0.0025) and not warned  # 0.1 x 32 / 128 x warmup 0.1
    lrs1, warned, trainer = _fit_batch(tiny_cfg, trainer_kwargs, tmp_path, 16, 12, max_epochs=2, ckpt_path="last")
    assert trainer.global_step == 6 + 12 and sorted(lrs1) == list(range(6, 18))
    assert len(warned) == 1, warned
    for change in ("peak LR 0.025 -> 0.0125", "global batch 32 -> 16", "steps_per_epoch 6 -> 12", "epoch 1.000"):
        assert change in warned[0], warned[0]
    assert lrs1[6] == pytest.approx(0.0125 * 0.75, rel=1e-12)  # epoch 1: 0.5 (1 + cos(pi / 3)) = 0.75
    for step, lr in lrs1.items():
        assert lr == pytest.approx(cosine_lr(0.0125, 1 + (step - 6) / 12), rel=1e-9), step
    lrs2, warned, trainer = _fit_batch(tiny_cfg, trainer_kwargs, tmp_path, 16, 12, max_epochs=3, ckpt_path="last")
    assert not warned and sorted(lrs2) == list(range(18, 30))
    assert lrs2[18] == pytest.approx(0.0125 * 0.25, rel=1e-12)  # epoch 2: 0.5 (1 + cos(2 pi / 3)) = 0.25
    for step, lr in lrs2.items():
        assert lr == pytest.approx(cosine_lr(0.0125, 2 + (step - 18) / 12), rel=1e-9), step


SLOW_CALLBACK = '''
import os, time
import lightning as L

class Progress(L.Callback):
    """Appends "epoch batch" after every training batch, slowly enough to be killed mid-epoch."""
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        with open(os.environ["PROGRESS_FILE"], "a") as f:
            f.write(f"{trainer.current_epoch} {batch_idx}\\n")
        time.sleep(0.15)
'''

RUN = """
model:
  model: {{type: regnet, depth: 4, w0: 8, wa: 8.0, wm: 2.0, group_width: 8}}
  schedule_epochs: 4
  warmup_epochs: 1
data:
  class_path: regnet_zoo.lightning.DigitsDataModule
  init_args: {{image_size: 16, batch_size: 32}}
trainer:
  max_epochs: 4
  limit_train_batches: 6
  limit_val_batches: 2
  log_every_n_steps: 2
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: slow_progress.Progress
"""


def _progress(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_from_last(tmp_path):
    (tmp_path / "slow_progress.py").write_text(textwrap.dedent(SLOW_CALLBACK))
    config = tmp_path / "run.yaml"
    config.write_text(RUN.format(root=tmp_path / "run"))
    progress = tmp_path / "progress.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "PROGRESS_FILE": str(progress), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "regnet_zoo", "fit", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while not any(e == 2 and b >= 2 for e, b in _progress(progress)):  # third epoch, third batch
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "training did not reach epoch 2 in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpts = tmp_path / "run" / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 1 and last["global_step"] == 12  # epochs 0 and 1 are complete and saved
    killed_at = len(_progress(progress))

    env_in_process = {"PROGRESS_FILE": str(progress)}
    old = {k: os.environ.get(k) for k in env_in_process}
    os.environ.update(env_in_process)
    sys.path.insert(0, str(tmp_path))
    try:
        from regnet_zoo.cli import main

        assert main(["fit", "--config", str(config), "--ckpt_path", "last"]) == 0
    finally:
        sys.path.remove(str(tmp_path))
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    resumed = _progress(progress)[killed_at:]
    assert resumed[0] == (2, 0)  # restarts the unfinished epoch 2 from its start, keeps epochs 0-1
    assert resumed == [(e, b) for e in (2, 3) for b in range(6)]
    final = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 3 and final["global_step"] == 24
    assert not list(ckpts.glob(".*.tmp"))
