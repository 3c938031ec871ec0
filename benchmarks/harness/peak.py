"""The machine's practical peak FLOP/s, measured with large 1x1 convolutions in channels_last.

On CPU, oneDNN's NHWC 1x1 convolution is the fastest dense kernel (``torch.matmul`` reaches less
than half of it on an AVX-512 machine), so the peak is the best of a few such shapes. On GPU the
same is measured in the autocast dtype. A multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# (batch, in channels, out channels, spatial size)
CPU_SHAPES = ((8, 1024, 1024, 28), (8, 512, 512, 56), (8, 2048, 2048, 14), (32, 256, 1024, 28))
GPU_SHAPES = ((256, 1024, 1024, 28), (128, 2048, 2048, 14), (256, 512, 2048, 28))


@dataclass(frozen=True)
class Peak:
    flops_per_s: float  # FLOP/s (multiply-add = 2)
    shape: tuple[int, int, int, int]  # the winning (batch, c_in, c_out, size)
    device: str
    dtype: str


def conv1x1_flops(batch: int, c_in: int, c_out: int, size: int) -> int:
    """FLOPs of a 1x1 convolution without bias on (batch, c_in, size, size): 2 per multiply-add."""
    return 2 * batch * c_in * c_out * size * size


@torch.no_grad()
def measure_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 shapes: tuple[tuple[int, int, int, int], ...] | None = None, repeats: int = 5) -> Peak:
    """Best FLOP/s over ``shapes`` of channels_last 1x1 convolutions (best of ``repeats`` runs each)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    shapes = shapes or (GPU_SHAPES if cuda else CPU_SHAPES)
    best = Peak(0.0, shapes[0], str(device), str(dtype).replace("torch.", ""))
    for n, c_in, c_out, size in shapes:
        x = torch.randn(n, c_in, size, size, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(c_out, c_in, 1, 1, device=device, dtype=dtype) / c_in**0.5).contiguous(
            memory_format=torch.channels_last)
        F.conv2d(x, w)  # warm-up: kernel selection, allocation
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            F.conv2d(x, w)
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        rate = conv1x1_flops(n, c_in, c_out, size) / min(times)
        if rate > best.flops_per_s:
            best = Peak(rate, (n, c_in, c_out, size), best.device, best.dtype)
        del x, w
    return best
