"""Callbacks: precise BN statistics, the end-of-run report, and a CSV prediction writer."""

from __future__ import annotations

import csv
import itertools
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader


@torch.no_grad()
def precise_bn_stats(models: Sequence[nn.Module], batches: Iterable[torch.Tensor], num_batches: int,
                     all_reduce_mean: Any = None) -> int:
    """Set every BN's running mean/var to the average of its batch statistics over ``num_batches`` batches.

    As pycls' ``compute_precise_bn_stats`` (momentum 1: each forward leaves the batch mean and unbiased
    variance in the running buffers, which are averaged), but in eval mode with only the BN layers in
    training mode, so dropout and DropPath are off (pycls ran it in training mode). Modes and momenta
    are restored. ``all_reduce_mean`` (tensor -> its mean over processes) averages over all batches of
    all processes; every process takes part, also one without batches (else DDP would hang). Returns
    the batches this process used; where no process used any, the statistics are unchanged.
    """
    bns = [m for model in models for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    modes = [(m, m.training) for model in models for m in model.modules()]
    momenta = [bn.momentum for bn in bns]
    buffers = [bn.running_mean for bn in bns] + [bn.running_var for bn in bns]  # updated in place by forward
    sums = buffers[0].new_zeros(sum(b.numel() for b in buffers) + 1, dtype=torch.float32)  # ..., batch count
    try:
        for model in models:
            model.eval()
        for bn in bns:
            bn.train()
            bn.momentum = 1.0
        for x in itertools.islice(batches, num_batches):
            for model in models:
                model(x)
            sums[:-1] += torch.cat([b.flatten() for b in buffers])
            sums[-1] += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        for m, training in modes:
            m.training = training
    used = int(sums[-1])
    if all_reduce_mean is not None:
        sums = all_reduce_mean(sums)  # mean of sums / mean of counts = sum of sums / sum of counts
    total = float(sums[-1])
    if total > 0:
        for buf, average in zip(buffers, (sums[:-1] / total).split([b.numel() for b in buffers])):
            buf.copy_(average.view_as(buf))
    return used


class PreciseBN(Callback):
    """Recompute BN statistics on training batches before each validation during ``fit`` (pycls BN.USE_PRECISE_STATS).

    Args:
        num_samples: training images over all processes (pycls BN.NUM_SAMPLES_PRECISE, 8192); per process
            ``num_samples / (per-device batch x world size)`` batches are used.
        num_batches: batches per process instead (overrides ``num_samples``), e.g. 200.

    The model's and (if enabled) the EMA's BN statistics are recomputed; the raw training images are
    used (no MixUp/CutMix). Statistics are averaged across processes.
    """

    def __init__(self, num_samples: int = 8192, num_batches: int | None = None):
        if num_samples < 1 or (num_batches is not None and num_batches < 1):
            raise ValueError(f"num_samples and num_batches must be >= 1, got {num_samples}, {num_batches}")
        self.num_samples, self.num_batches = num_samples, num_batches
        self._done_at_step = -1
        self.last_num_batches = 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self._done_at_step == trainer.global_step:
            return
        self._done_at_step = trainer.global_step
        loader = trainer.train_dataloader
        if not isinstance(loader, DataLoader):
            raise TypeError(f"PreciseBN needs a single torch DataLoader for training, got {type(loader).__name__}")
        n = self.num_batches or max(1, self.num_samples // (loader.batch_size * trainer.world_size))
        n = int(min(n, len(loader), trainer.num_training_batches))  # never more than an epoch of training uses
        # a separate, non-persistent loader over the same data and sampler leaves the training iterator alone
        fresh = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=loader.sampler,
                           num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                           drop_last=loader.drop_last)
        models = [pl_module.model] + ([pl_module.ema.module] if getattr(pl_module, "ema", None) is not None else [])
        prepare = getattr(pl_module, "prepare_input", lambda x: x)
        inputs = (prepare(batch[0].to(pl_module.device, non_blocking=True)) for batch in fresh)
        with trainer.precision_plugin.forward_context():
            self.last_num_batches = precise_bn_stats(models, inputs, n,
                                                     lambda t: trainer.strategy.reduce(t, reduce_op="mean"))


def _existing(path: str | None) -> str | None:
    return path if path and os.path.isfile(path) else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class RunReport(Callback):
    """Prints a short report when ``fit`` ends: validation accuracy, time, checkpoint paths.

    ``summary`` holds the same facts as a dict (``val_acc1``, ``best_val_acc1``, ``seconds``, ``epochs``,
    ``best_checkpoint``, ``last_checkpoint``); ``print_on_fit_end=False`` leaves ``print_report()`` to the
    caller (the CLI, after the progress bar)."""

    def __init__(self, print_on_fit_end: bool = True) -> None:
        self.print_on_fit_end = print_on_fit_end
        self._t0 = 0.0
        self.summary: dict[str, Any] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics, checkpoints = trainer.callback_metrics, trainer.checkpoint_callbacks
        ckpt = checkpoints[0] if checkpoints else None
        # the newest full-state file: a save_last copy, or what a monitor=None callback saves every time
        last = next((p for cb in checkpoints for p in (cb.last_model_path, cb.best_model_path if cb.monitor is None
                                                       else None) if _existing(p)), None)
        self.summary = {
            "model": getattr(pl_module.hparams, "name", None) or getattr(pl_module.hparams, "model", None),
            "val_acc1": _float(metrics.get("val/acc1")), "val_acc5": _float(metrics.get("val/acc5")),
            "best_val_acc1": _float(ckpt.best_model_score if ckpt is not None else None),
            "seconds": time.perf_counter() - self._t0, "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_checkpoint": _existing(ckpt.best_model_path if ckpt is not None else None),
            "last_checkpoint": last,
        }
        if self.print_on_fit_end:
            self.print_report()

    @rank_zero_only
    def print_report(self) -> None:
        s = self.summary
        if not s:
            return

        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        minutes, seconds = divmod(s["seconds"], 60)
        model = s["model"] if isinstance(s["model"], str) else "custom config"
        lines = [f"Trained {model} for {s['epochs']} epochs ({s['global_step']} steps) in "
                 f"{int(minutes)}m {seconds:.1f}s",
                 f"  validation top-1: {pct(s['val_acc1'])} (top-5 {pct(s['val_acc5'])}); "
                 f"best top-1: {pct(s['best_val_acc1'])}"]
        if s["best_checkpoint"]:
            lines.append(f"  best checkpoint: {s['best_checkpoint']}")
        if s["last_checkpoint"]:
            lines.append(f"  last checkpoint: {s['last_checkpoint']}  (resume: --ckpt_path last)")
        print("\n".join(lines), flush=True)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` results (dataset index, image path if known, top-k classes and probabilities) as CSV, one
    file per process: ``output_dir/predictions.csv`` (``predictions-rank<r>.csv`` with several)."""

    def __init__(self, output_dir: str = "predictions", top_k: int = 5):
        super().__init__(write_interval="batch")
        self.output_dir, self.top_k = output_dir, top_k
        self._file: Any = None

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: torch.Tensor,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int,
                           dataloader_idx: int = 0) -> None:
        if self._file is None:  # this process's file
            os.makedirs(self.output_dir, exist_ok=True)
            name = "predictions.csv" if trainer.world_size == 1 else f"predictions-rank{trainer.global_rank}.csv"
            self._file = open(os.path.join(self.output_dir, name), "w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["index", "path"] + [c for i in range(1, self.top_k + 1)
                                                       for c in (f"class{i}", f"prob{i}")])
        loader = trainer.predict_dataloaders
        samples = getattr(loader.dataset if isinstance(loader, DataLoader) else None, "samples", None)
        classes = getattr(trainer.datamodule, "classes", None) if trainer.datamodule is not None else None
        probs, idx = prediction.float().topk(min(self.top_k, prediction.shape[-1]), dim=-1)
        indices = list(batch_indices) if batch_indices is not None else [None] * len(prediction)
        for index, p, i in zip(indices, probs.tolist(), idx.tolist()):
            path = samples[index][0] if samples is not None and index is not None else ""
            names = [classes[j] if classes is not None else j for j in i]
            self._writer.writerow([index, path] + [v for pair in zip(names, (f"{q:.6f}" for q in p)) for v in pair])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
