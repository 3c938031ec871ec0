"""Activation memory of a training step, measured, next to the analytic activation count.

``saved_activation_bytes`` sums the storage of every tensor autograd keeps for the backward pass
(a ``saved_tensors_hooks`` pack hook; parameters excluded, shared storages counted once), which is
the memory that grows with batch size. On CUDA, ``cuda_training_peak_bytes`` reads the allocator's
peak over forward + backward.
"""

from __future__ import annotations

import torch
from torch import nn


def saved_activation_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves during ``model(x)`` (train mode as given), params excluded."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_ptrs:
            storages[ptr] = max(storages.get(ptr, 0), storage.nbytes())
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    del out
    return sum(storages.values())


def cuda_training_peak_bytes(model: nn.Module, x: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> int:
    """Peak CUDA memory above the pre-step level during forward + backward of ``model(x).float().sum()``."""
    device = x.device
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.autocast("cuda", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        loss = model(x).float().sum()
    loss.backward()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    model.zero_grad(set_to_none=True)
    return int(peak)
