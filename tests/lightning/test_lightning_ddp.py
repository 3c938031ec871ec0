"""DDP with 2 CPU processes (gloo) through `regnet-zoo fit`: shards, global batch, LR, and equivalence.

Two processes x 16 images with synchronized BN must be one process training on 32: each step's two
shards are disjoint and together the single-process batch of 32, the LR is base_lr x 32 / 128 in both
runs, and the first step's gradients, the BN statistics and the weights after the epoch's 3 steps
agree. Without SyncBN, and with gradient accumulation (1 x 16 x 2), BN normalizes each 16 on its own
("ghost batches"): the first step's gradients are those predicted by plain PyTorch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from regnet_zoo.cli import main

pytestmark = pytest.mark.slow  # DDP runs: 2 x 2 processes

PROBE = '''
import os
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


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Probe(L.Callback):
    """Writes rank{r}.pt: the first optimizer step's gradients (after DDP's all-reduce), the BN layer
    types, the buffers after that step's forward passes, the LR of every step, the loaded indices, the
    world size and the final weights; rank 0 also writes initial.pt, the weights before training."""
    def __init__(self, out: str):
        self.out, self.record = out, {"lrs": {}}
    def on_train_start(self, trainer, pl_module):
        if trainer.global_rank == 0:
            torch.save(_state(pl_module.model), os.path.join(self.out, "initial.pt"))
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.record["lrs"][trainer.global_step] = optimizer.param_groups[0]["lr"]
        if trainer.global_step == 0:
            self.record.update(grads={n: p.grad.detach().clone() for n, p in pl_module.model.named_parameters()},
                               world_size=trainer.world_size,
                               bn_types=sorted({type(m).__name__ for m in pl_module.model.modules()
                                                if isinstance(m, _BatchNorm)}))
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1 and "buffers" not in self.record:
            self.record["buffers"] = {n: b.detach().clone() for n, b in pl_module.model.named_buffers()}
    def on_train_end(self, trainer, pl_module):
        self.record.update(indices=trainer.datamodule.train_set.seen, final=_state(pl_module.model))
        torch.save(self.record, os.path.join(self.out, f"rank{trainer.global_rank}.pt"))
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
  limit_train_batches: {batches}
  accumulate_grad_batches: {accumulate}
  limit_val_batches: 0
  accelerator: cpu
  devices: {devices}
  strategy: {strategy}
  sync_batchnorm: {sync}
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {root}
  callbacks:
    - class_path: ddp_probe.Probe
      init_args: {{out: {out}}}
"""


def _config(tmp_path, name: str, devices: int, batch: int, sync: bool = False, batches: float = 1.0,
            accumulate: int = 1):
    """A run's config file and output folder; ``batches``: Lightning's limit_train_batches (1.0: all 3 steps)."""
    out = tmp_path / f"{name}_out"
    out.mkdir()
    config = tmp_path / f"{name}.yaml"
    config.write_text(RUN.format(batch=batch, devices=devices, strategy="ddp" if devices > 1 else "auto",
                                 sync=str(sync).lower(), batches=batches, accumulate=accumulate,
                                 root=tmp_path / name, out=out))
    return config, out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reference(initial: dict, images: torch.Tensor, labels: torch.Tensor, groups: list[list[int]]):
    """Plain PyTorch: mean loss over the groups, BN in training mode over each group on its own.

    Returns (gradients, buffers after the forward passes, which run group by group in this order).
    """
    from regnet_zoo.lightning import RegNetClassifier
    from tests.lightning.conftest import TINY_CFG

    model = RegNetClassifier(dict(TINY_CFG), num_classes=10).model
    model.load_state_dict(initial)
    model.train()
    loss = sum(torch.nn.functional.cross_entropy(model(images[g]), labels[g]) for g in groups) / len(groups)
    loss.backward()
    return ({n: p.grad for n, p in model.named_parameters()},
            {n: b.detach() for n, b in model.named_buffers()})


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_processes_of_16_equal_one_process_of_32_and_ghost_batches_are_predicted(tmp_path):
    """2 x 16 with SyncBN = 1 x 32 over the epoch's 3 steps; 2 x 16 without SyncBN and 1 x 16 x accumulate 2
    give the first-step gradients of BN over each 16 on its own (predicted by plain PyTorch).

    All four runs start from the same weights (seed 0) and step with the same LR (global batch 32).
    """
    from regnet_zoo.lightning import DigitsDataModule

    (tmp_path / "ddp_probe.py").write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    runs = {"sync": _config(tmp_path, "sync", devices=2, batch=16, sync=True),
            "nosync": _config(tmp_path, "nosync", devices=2, batch=16, batches=1)}
    procs = {name: subprocess.Popen([sys.executable, "-m", "regnet_zoo", "fit", "--config", str(cfg)],
                                    env={**env, "MASTER_PORT": str(_free_port())}, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, (cfg, _) in runs.items()}
    runs["single"] = _config(tmp_path, "single", devices=1, batch=32)
    runs["accum"] = _config(tmp_path, "accum", devices=1, batch=16, batches=2, accumulate=2)
    sys.path.insert(0, str(tmp_path))
    try:
        for name in ("single", "accum"):
            assert main(["fit", "--config", str(runs[name][0])]) == 0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ddp_probe", None)
    logs = {}
    for name, proc in procs.items():
        logs[name], _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {logs[name][-4000:]}"
    assert "global batch 32 (16 per device x 2 devices x 1 nodes x 1 accumulated) = 0.025" in logs["sync"]
    assert "Trained custom config for 1 epochs (3 steps)" in logs["sync"]  # 96 images / global batch 32
    rec = {name: [torch.load(out / f"rank{r}.pt") for r in range(2 if name in ("sync", "nosync") else 1)]
           for name, (_, out) in runs.items()}
    initial = torch.load(runs["single"][1] / "initial.pt")
    for name, (_, out) in runs.items():
        start = torch.load(out / "initial.pt")
        assert all(torch.equal(v, start[k]) for k, v in initial.items()), name
        assert all(r["lrs"][0] == pytest.approx(0.025, rel=1e-12) for r in rec[name]), name  # 0.1 x 32 / 128
        assert [r["world_size"] for r in rec[name]] == [len(rec[name])] * len(rec[name]), name
    assert rec["sync"][0]["bn_types"] == ["AllReduceBatchNormAct"]  # BN + ReLU, synchronized over gloo
    assert rec["nosync"][0]["bn_types"] == rec["single"][0]["bn_types"] == ["BatchNormAct2d"]

    # shards: disjoint, 48 images each, together all 96; per step the two shards form the single run's batch
    (r0, r1), single = rec["sync"], rec["single"][0]
    assert len(r0["indices"]) == len(r1["indices"]) == 48 and not set(r0["indices"]) & set(r1["indices"])
    assert sorted(r0["indices"] + r1["indices"]) == list(range(96)) == sorted(single["indices"])
    for k in range(3):
        ddp_batch = set(r0["indices"][16 * k:16 * k + 16]) | set(r1["indices"][16 * k:16 * k + 16])
        assert ddp_batch == set(single["indices"][32 * k:32 * k + 32]), k
    # LR: 0.1 x 32 / 128 = 0.025 at step 0, then the cosine over 1 epoch of 3 steps: x 0.75, x 0.25
    expected = {0: 0.025, 1: 0.01875, 2: 0.00625}
    for run in (r0, r1, single):
        assert run["lrs"].keys() == expected.keys()
        assert all(run["lrs"][s] == pytest.approx(v, rel=1e-12) for s, v in expected.items())
    # the weights after the 3 steps: moved, and the same in both ranks and in the single process
    moved = max((single["final"][k] - v).abs().max().item() for k, v in initial.items() if v.is_floating_point())
    assert moved > 1e-3  # the steps really changed the weights
    for k, v in single["final"].items():
        for r in (r0, r1):
            assert torch.allclose(r["final"][k], v, rtol=1e-4, atol=1e-6), k

    dm = DigitsDataModule(image_size=16)
    dm.setup("fit")
    images = torch.stack([dm.train_set[i][0] for i in range(96)])
    labels = torch.tensor([int(dm.train_set[i][1]) for i in range(96)])
    half = [r["indices"][:16] for r in rec["nosync"]]  # the two ranks' first batches
    single_batch = single["indices"][:32]
    micro = [rec["accum"][0]["indices"][:16], rec["accum"][0]["indices"][16:32]]
    assert sorted(half[0] + half[1]) == sorted(single_batch) == sorted(micro[0] + micro[1])
    assert sorted(r["indices"][:16] for r in rec["sync"]) == sorted(half)  # same shards with and without SyncBN

    full, full_buffers = _reference(initial, images, labels, [single_batch])
    ghost, _ = _reference(initial, images, labels, half)
    accum_ref, accum_buffers = _reference(initial, images, labels, micro)
    _, rank_buffers = zip(*(_reference(initial, images, labels, [h]) for h in half))
    tol = 2e-6
    diffs = {"single-full": _max_diff(single["grads"], full),
             "sync-single": max(_max_diff(r["grads"], single["grads"]) for r in rec["sync"]),
             "nosync-ghost": max(_max_diff(r["grads"], ghost) for r in rec["nosync"]),
             "accum-ghost(micro)": _max_diff(rec["accum"][0]["grads"], accum_ref),
             "nosync-single": _max_diff(rec["nosync"][0]["grads"], single["grads"])}
    scale = max(v.abs().max().item() for v in full.values())
    print(f"first-step gradient differences (largest gradient {scale:.3g}): {diffs}")
    assert diffs["single-full"] < tol and diffs["sync-single"] < tol, diffs
    assert diffs["nosync-ghost"] < tol and diffs["accum-ghost(micro)"] < tol, diffs
    assert diffs["nosync-single"] > 1000 * tol, diffs  # BN over 16 instead of 32 changes the gradient
    # BN statistics after the first step: SyncBN's are the 32-image batch's on both ranks; without it each
    # rank's are its 16's; accumulation updates them twice (momentum applied per micro-batch)
    for r in rec["sync"]:
        assert _max_diff(r["buffers"], single["buffers"]) < 1e-6
    assert _max_diff(single["buffers"], full_buffers) < 1e-6
    for r, ref in zip(rec["nosync"], rank_buffers):
        assert _max_diff(r["buffers"], ref) < 1e-6
    assert _max_diff(rec["accum"][0]["buffers"], accum_buffers) < 1e-6
    assert int(rec["accum"][0]["buffers"]["stem.bn.num_batches_tracked"]) == 2
    assert int(rec["sync"][0]["buffers"]["stem.bn.num_batches_tracked"]) == 1
