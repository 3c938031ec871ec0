"""Memory of a training step (forward + backward), three ways, each named for what it is.

* ``saved_activation_bytes``: bytes of the tensors autograd keeps for the backward pass (a
  ``saved_tensors_hooks`` pack hook; parameters excluded, shared storages counted once). This is
  *counted*, not a measured peak: the memory that grows with batch size, on any device.
* ``process_training_peak_bytes`` (CPU): *measured* rise of the resident set size of a fresh Python
  process during one training step above its steady state (model, gradients, input in memory):
  the kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``; elsewhere the
  rise of ``ru_maxrss``). glibc is told to serve and return every allocation over 64 KiB with mmap,
  so memory freed earlier cannot hide the step's allocations. Includes temporaries and workspaces.
* ``cuda_training_peak_bytes`` (CUDA): *measured* peak of the caching allocator above the pre-step level.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.models import efficientnet, zoo_model

SAVED_METHOD = "autograd saved_tensors_hooks: bytes of the tensors saved for backward (params excluded)"
PROCESS_PEAK_METHOD = "measured: rise of the process's peak RSS during one fwd+bwd step (fresh subprocess)"
CUDA_PEAK_METHOD = "measured: rise of cuda max_memory_allocated during one fwd+bwd step"
_CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}


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


def process_training_peak_bytes(model: str, batch: int, resolution: int | None = None, *, threads: int = 2,
                                timeout_s: float = 1800) -> int:
    """Measured peak memory of one CPU training step of ``model`` in a fresh Python process, in bytes.

    Args:
        model: zoo name (``"regnetx_200mf"``) or ``"efficientnet_bN"`` (timm, at its native resolution).
        batch: images per step; resolution: pixels (default: 224 for zoo models, native for EfficientNets).
        threads: torch threads of the child process.

    The child builds the model, runs one warm-up step (gradients and kernel caches exist afterwards),
    then reports how far one more forward + backward (cross-entropy) raises its RSS high-water mark.
    """
    spec = json.dumps(dict(model=model, batch=batch, resolution=resolution, threads=threads))
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from harness.memory import _child_main; "
            "_child_main(sys.argv[1])")
    benchmarks_dir = str(Path(__file__).resolve().parents[1])  # where the child imports harness from
    proc = subprocess.run([sys.executable, "-c", code, spec, benchmarks_dir], capture_output=True, text=True,
                          timeout=timeout_s, env={**os.environ, **_CHILD_ENV})
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess for {model} (batch {batch}) failed with exit code "
                           f"{proc.returncode}:\n{proc.stderr.strip()[-2000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"])


def _build(model: str, resolution: int | None) -> tuple[nn.Module, int]:

    s = efficientnet(model) if model.lower().startswith("efficientnet") else zoo_model(model)
    return s.model, resolution or s.resolution


class _PeakMeter:
    """The process's RSS high-water mark, reset to the current RSS (Linux) or the ru_maxrss rise (elsewhere)."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.base, self.linux = self._status("VmRSS"), True
        except OSError:
            self.base, self.linux = self._maxrss(), False

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(f"/proc/self/status has no {key}")

    @staticmethod
    def _maxrss() -> int:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux

    def rise(self) -> int:
        return (self._status("VmHWM") if self.linux else self._maxrss()) - self.base


def _child_main(spec_json: str) -> None:
    spec: dict[str, Any] = json.loads(spec_json)
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model, res = _build(spec["model"], spec["resolution"])
    model.train()
    x = torch.randn(spec["batch"], 3, res, res)
    target = torch.randint(0, 1000, (spec["batch"],))

    def step() -> None:
        F.cross_entropy(model(x), target).backward()

    step()  # warm-up: allocates the gradients, initialises oneDNN
    model.zero_grad(set_to_none=False)
    gc.collect()
    meter = _PeakMeter()
    step()
    print(json.dumps({"peak_bytes": meter.rise()}))
