"""Synchronized BatchNorm for our models: BN statistics over the global batch of all processes.

Lightning's ``Trainer(sync_batchnorm=True)`` uses ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``, which
turns timm's fused ``BatchNormAct2d`` (BN + ReLU) into a plain ``SyncBatchNorm`` that never calls the
ReLU. The ``TimmSyncBatchNorm`` plugin converts keeping the activation and reverts after fit; with CPU
processes (gloo), where torch's SyncBatchNorm refuses to run, the layers are ``AllReduceBatchNormAct``
(per-channel sums all-reduced with the differentiable ``torch.distributed.nn.functional.all_reduce``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm
from timm.layers import BatchNormAct2d
from timm.layers import SyncBatchNormAct as TimmSyncBatchNormAct
from timm.layers import convert_sync_batchnorm as timm_convert_sync_batchnorm
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


class AllReduceBatchNormAct(BatchNormAct2d):
    """timm's ``BatchNormAct2d`` whose training-mode statistics are all-reduced over a process group
    (any backend and device, see the module docstring); one process, eval mode or no group: plain."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: dist.ProcessGroup | None = None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, apply_act=False)
        self.process_group = process_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.process_group or (dist.group.WORLD if dist.is_available() and dist.is_initialized() else None)
        if not self.training or group is None or dist.get_world_size(group) == 1:
            return super().forward(x)
        return self.act(self.drop(self._sync_batch_norm(x, group)))

    def _sync_batch_norm(self, x: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
        """(N, C, H, W) normalized with the mean and biased variance over every process's N x H x W."""
        c = x.shape[1]
        count = x.new_full((1,), x.numel() // c)
        stats = differentiable_all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]), group=group)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(mean, alpha=m)
                self.running_var.mul_(1 - m).add_(var * n / (n - 1), alpha=m)  # unbiased, as torch keeps it
        scale = torch.rsqrt(var + self.eps) * (self.weight if self.affine else 1.0)
        shift = (self.bias if self.affine else 0.0) - mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _copy_state(src: _BatchNorm, dst: _BatchNorm) -> _BatchNorm:
    if src.affine:
        dst.weight, dst.bias = src.weight, src.bias  # the same Parameters: optimizer and DDP keep working
    dst.running_mean, dst.running_var = src.running_mean, src.running_var
    dst.num_batches_tracked = src.num_batches_tracked
    dst.training = src.training
    return dst


def convert_sync_batchnorm(module: nn.Module, process_group: dist.ProcessGroup | None = None,
                           native: bool = False) -> nn.Module:
    """Synchronize every ``BatchNorm2d`` / ``BatchNormAct2d`` of ``module``, keeping act and drop: ``native``, timm's
    ``SyncBatchNormAct`` (torch's CUDA kernels; GPUs only); else ``AllReduceBatchNormAct`` (any device and backend).
    """
    if native:
        return timm_convert_sync_batchnorm(module, process_group)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, AllReduceBatchNormAct):  # incl. BNAct
        out = _copy_state(module, AllReduceBatchNormAct(module.num_features, module.eps, module.momentum,
                                                        module.affine, module.track_running_stats, process_group))
        if isinstance(module, BatchNormAct2d):
            out.act, out.drop = module.act, module.drop
        return out
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child, process_group))
    return module


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Inverse of ``convert_sync_batchnorm``: back to ``BatchNormAct2d`` (same tensors, act and drop kept)."""
    if isinstance(module, (AllReduceBatchNormAct, TimmSyncBatchNormAct)):
        out = _copy_state(module, BatchNormAct2d(module.num_features, module.eps, module.momentum, module.affine,
                                                 module.track_running_stats, apply_act=False))
        out.act, out.drop = module.act, module.drop
        return out
    for name, child in module.named_children():
        setattr(module, name, revert_sync_batchnorm(child))
    return module


def torch_converted_norm_act(module: nn.Module) -> list[str]:
    """Names of layers that ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` made from ``BatchNormAct2d``: plain
    ``SyncBatchNorm`` layers still holding the ``act`` they no longer call."""
    return [name for name, m in module.named_modules()
            if type(m) is nn.SyncBatchNorm and not isinstance(getattr(m, "act", nn.Identity()), nn.Identity)]


class TimmSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning ``LayerSync`` plugin converting with ``convert_sync_batchnorm`` (native for NCCL & co, not for gloo
    or mpi): ``L.Trainer(strategy="ddp", sync_batchnorm=True, plugins=[TimmSyncBatchNorm()])``."""

    def apply(self, model: nn.Module) -> nn.Module:
        native = dist.is_available() and dist.is_initialized() and dist.get_backend() not in ("gloo", "mpi")
        return convert_sync_batchnorm(model, native=native)

    def revert(self, model: nn.Module) -> nn.Module:
        return super().revert(revert_sync_batchnorm(model))  # then torch's for plain SyncBatchNorm layers
