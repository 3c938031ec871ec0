"""Resumption: a resumed run equals an uninterrupted one; kill -9 mid-epoch loses at most that epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
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


@pytest.mark.parametrize("num_workers", [0, 1])
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
