"""DDP with 2 CPU processes (gloo) through `regnet-zoo fit`: shards, global batch, LR, and equivalence.

Two processes x 16 images must be one optimizer step on 32 images: each step's two shards are disjoint
and together the single-process batch of 32, the LR is base_lr x 32 / 128 in both runs, and with BN in
eval mode (each sample's forward independent of the others) the updated weights of the DDP run equal
those of one process training on batches of 32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from regnet_zoo.cli import main

PROBE = '''
import json, os
import lightning as L
import torch
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset
from regnet_zoo.lightning import DigitsDataModule


class Recording(Dataset):
    """The first n samples of base; remembers every index this process loads."""
    def __init__(self, base, n):
        self.base, self.n, self.seen = base, n, []
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.base[i]


class FirstDigits(DigitsDataModule):
    def setup(self, stage=None):
        super().setup(stage)
        if not isinstance(self.train_set, Recording):
            self.train_set = Recording(self.train_set, 96)


class Probe(L.Callback):
    """BN in eval mode while training; records LRs; writes loaded indices and (rank 0) weights."""
    def __init__(self, out: str):
        self.out, self.lrs = out, {}
    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank == 0:
            torch.save({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()},
                       os.path.join(self.out, "initial.pt"))
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for m in pl_module.model.modules():
            if isinstance(m, _BatchNorm):
                m.eval()
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]
    def on_train_end(self, trainer, pl_module):
        rank = trainer.global_rank
        with open(os.path.join(self.out, f"rank{rank}.json"), "w") as f:
            json.dump({"world_size": trainer.world_size, "indices": trainer.datamodule.train_set.seen,
                       "lrs": self.lrs}, f)
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()},
                       os.path.join(self.out, "final.pt"))
'''

RUN = """
model:
  model: {{type: regnet, depth: 4, w0: 8, wa: 8.0, wm: 2.0, group_width: 8}}
  base_lr: 0.1
  warmup_epochs: 0
data:
  class_path: ddp_probe.FirstDigits
  init_args: {{image_size: 16, batch_size: {batch}}}
trainer:
  max_epochs: 1
  limit_val_batches: 2
  log_every_n_steps: 1
  accelerator: cpu
  devices: {devices}
  strategy: {strategy}
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: ddp_probe.Probe
      init_args: {{out: {out}}}
"""


def _config(tmp_path, name: str, devices: int, batch: int) -> tuple:
    out = tmp_path / f"{name}_out"
    out.mkdir()
    config = tmp_path / f"{name}.yaml"
    config.write_text(RUN.format(batch=batch, devices=devices, strategy="ddp" if devices > 1 else "auto",
                                 root=tmp_path / name, out=out))
    return config, out


def _load(out, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def test_two_processes_of_16_equal_one_process_of_32(tmp_path):
    (tmp_path / "ddp_probe.py").write_text(textwrap.dedent(PROBE))
    ddp_config, ddp_out = _config(tmp_path, "ddp", devices=2, batch=16)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "regnet_zoo", "fit", "--config", str(ddp_config)], env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "global batch 32 (16 per device x 2 devices x 1 nodes x 1 accumulated) = 0.025" in out
    assert "Trained custom config for 1 epochs (3 steps)" in out  # 96 images / global batch 32

    single_config, single_out = _config(tmp_path, "single", devices=1, batch=32)
    sys.path.insert(0, str(tmp_path))
    try:
        assert main(["fit", "--config", str(single_config)]) == 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ddp_probe", None)

    r0, r1, single = _load(ddp_out, 0), _load(ddp_out, 1), _load(single_out, 0)
    assert r0["world_size"] == r1["world_size"] == 2 and single["world_size"] == 1
    # shards: disjoint, 48 images each, together all 96; per step the two shards form the single run's batch
    assert len(r0["indices"]) == len(r1["indices"]) == 48 and not set(r0["indices"]) & set(r1["indices"])
    assert sorted(r0["indices"] + r1["indices"]) == list(range(96)) == sorted(single["indices"])
    for k in range(3):
        ddp_batch = set(r0["indices"][16 * k:16 * k + 16]) | set(r1["indices"][16 * k:16 * k + 16])
        assert ddp_batch == set(single["indices"][32 * k:32 * k + 32]), k
    # LR: 0.1 x 32 / 128 = 0.025 at step 0, then the cosine over 1 epoch of 3 steps: x 0.75, x 0.25
    expected = {"0": 0.025, "1": 0.01875, "2": 0.00625}
    for run in (r0, r1, single):
        assert run["lrs"].keys() == expected.keys()
        assert all(run["lrs"][s] == pytest.approx(v, rel=1e-12) for s, v in expected.items())
    # same initial weights, same updated weights after 3 steps
    ddp_init, single_init = torch.load(ddp_out / "initial.pt"), torch.load(single_out / "initial.pt")
    ddp_final, single_final = torch.load(ddp_out / "final.pt"), torch.load(single_out / "final.pt")
    assert all(torch.equal(ddp_init[k], single_init[k]) for k in ddp_init)
    moved = max((ddp_final[k] - ddp_init[k]).abs().max().item() for k in ddp_init if ddp_init[k].is_floating_point())
    assert moved > 1e-3  # the steps really changed the weights
    for k, v in ddp_final.items():
        if v.is_floating_point():
            assert torch.allclose(v, single_final[k], rtol=1e-4, atol=1e-6), k
