"""The machine's practical peak FLOP/s, measured with large 1x1 convolutions in channels_last.

On CPU, oneDNN's NHWC 1x1 convolution is the fastest dense kernel (``torch.matmul`` reaches less
than half of it on an AVX-512 machine), so the peak is the best of a few such shapes. On GPU the
same is measured in the autocast dtype. A multiply-add counts as 2 FLOPs.

Per dtype (``measure_peak(dtype=...)``): float32 and bfloat16 time ``F.conv2d`` (oneDNN, the kernels
the zoo's fp32 / bf16 paths run); int8 (``measure_int8_peak``) times the same shapes as OpenVINO int8
convolutions (the zoo's int8 backend: fake-quantized activations and per-channel weights, which
OpenVINO's CPU plugin runs as ``brgconv_*_I8`` VNNI / AMX kernels), counting only the convolution
node's own time (``PERF_COUNT``), i.e. without the graph's input quantization and layout reorders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
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


def _int8_conv_model(n: int, c_in: int, c_out: int, size: int, seed: int = 0):
    """OpenVINO model: fake-quantized (N, c_in, size, size) input -> int8 per-channel 1x1 convolution."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(seed)
    x = ops.parameter([n, c_in, size, size], np.float32, name="x")
    lo, hi = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
    qx = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    w = (rng.standard_normal((c_out, c_in, 1, 1)) / c_in**0.5).astype(np.float32)
    w_hi = np.abs(w).max(axis=(1, 2, 3), keepdims=True)
    qw = ops.fake_quantize(ops.constant(w), ops.constant(-w_hi), ops.constant(w_hi), ops.constant(-w_hi),
                           ops.constant(w_hi), 255)
    return ov.Model([ops.convolution(qx, qw, [1, 1], [0, 0], [0, 0], [1, 1])], [x])


def measure_int8_peak(shapes: tuple[tuple[int, int, int, int], ...] = CPU_SHAPES, repeats: int = 5,
                      threads: int | None = None) -> Peak:
    """Best FLOP/s over ``shapes`` of OpenVINO int8 1x1 convolutions (CPU; best of ``repeats`` runs each).

    The time is the convolution node's (``PERF_COUNT``); its kernel name must contain ``I8`` (checked),
    so a CPU where OpenVINO falls back to float convolutions raises ``RuntimeError``.
    """
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True,
              **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {})}
    best = Peak(0.0, shapes[0], "cpu", "int8")
    for n, c_in, c_out, size in shapes:
        request = core.compile_model(_int8_conv_model(n, c_in, c_out, size), "CPU", config).create_infer_request()
        x = np.random.default_rng(1).standard_normal((n, c_in, size, size)).astype(np.float32)
        request.infer({0: x})  # warm-up
        times = []
        for _ in range(repeats):
            request.infer({0: x})
            convs = [p for p in request.profiling_info if p.node_type == "Convolution"]
            if not convs or any("I8" not in p.exec_type for p in convs):
                raise RuntimeError(f"OpenVINO ran no int8 convolution here: {[p.exec_type for p in convs]}")
            times.append(sum(p.real_time.total_seconds() for p in convs))
        rate = conv1x1_flops(n, c_in, c_out, size) / min(times)
        if rate > best.flops_per_s:
            best = Peak(rate, (n, c_in, c_out, size), "cpu", "int8")
    return best
