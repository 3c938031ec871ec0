"""Inference speed of one zoo model (``regnet-zoo benchmark``): ``compare(name)`` times named ``Variant``s in NCHW
and channels_last, interleaved (``time_interleaved``), with ratios to timm's eager model from the same run.
The full protocol is the repository's ``benchmarks/deploy_speed.py``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import timm
import torch
from torch import nn

from regnet_zoo.factory import create
from regnet_zoo.inference.optimize import optimize_for_inference
from regnet_zoo.inference.quantize import quantize_model
from regnet_zoo.registry import ModelEntry, get_entry

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


@dataclass
class Timing:
    """Seconds per call of one workload (one call processes ``batch`` images); images/s of the median call and
    of the fastest (the least disturbed by other load), and ``spread`` = (max - min) / median (the noise)."""

    name: str
    batch: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min_s(self) -> float:
        return min(self.seconds)

    @property
    def images_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def best_images_per_s(self) -> float:
        return self.batch / self.min_s

    @property
    def spread(self) -> float:
        return (max(self.seconds) - min(self.seconds)) / self.median_s


def time_interleaved(cases: Mapping[str, Callable[[], object]], batch: int | Mapping[str, int], *, warmup: int = 1,
                     repeats: int = 5, iters: int = 1, sync: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Time ``cases`` (name -> zero-argument callable running one batch), each round running every case once in
    a rotating order, so that slow phases of a shared machine hit all alike.

    Args:
        batch: images per call, one for all or per case name.
        warmup: untimed calls of each case first (compilation, allocator, caches).
        repeats: timed rounds; each case's time is the median over rounds.
        iters: calls per case and round (their mean is the round's time).
        sync: called before reading the clock (``torch.cuda.synchronize`` on GPU).
    """
    if repeats < 1 or iters < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, iters >= 1, warmup >= 0; got {repeats}, {iters}, {warmup}")
    sync = sync or (lambda: None)
    names = list(cases)
    out = {n: Timing(n, batch if isinstance(batch, int) else batch[n]) for n in names}
    for _ in range(warmup):
        for n in names:
            cases[n]()
    sync()
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            start = time.perf_counter()
            for _ in range(iters):
                cases[n]()
            sync()
            out[n].seconds.append((time.perf_counter() - start) / iters)
    return out


def flush_denormal_enabled() -> bool:
    """Whether the CPU flushes denormal floats to zero (``torch.set_flush_denormal``, which has no getter)."""
    tiny = torch.full((64,), 2.0**-140, dtype=torch.float32)  # a float32 denormal
    return bool((tiny * 1.5).eq(0).all())


@contextlib.contextmanager
def benchmark_settings(threads: int | None) -> Iterator[None]:
    """torch threads (None: unchanged) and flushed denormals for a timed run; both restored afterwards."""
    threads_before, flush_before = torch.get_num_threads(), flush_denormal_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # denormals can slow CPU kernels arbitrarily; benchmark weights are random
    try:
        yield
    finally:
        torch.set_flush_denormal(flush_before)
        torch.set_num_threads(threads_before)


@dataclass(frozen=True)
class Variant:
    """One way to run a zoo model: ``build(model, entry, layout)`` returns the module to time, from the zoo
    model (eval mode, on the device; copied, never changed) for inputs in ``layout`` ("nchw" or "nhwc")."""

    name: str
    build: Callable[[nn.Module, ModelEntry, str], nn.Module]


def zoo_eager(model: nn.Module, entry: ModelEntry, layout: str) -> nn.Module:
    """Our model as ``create`` returns it."""
    return copy.deepcopy(model).to(memory_format=LAYOUTS[layout])


def timm_eager(model: nn.Module, entry: ModelEntry, layout: str) -> nn.Module:
    """timm's implementation of the architecture (``entry.timm_name``) with our state dict, loaded strictly."""
    ref = timm.create_model(entry.timm_name, pretrained=False, num_classes=model.num_classes)
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref.to(next(model.parameters()).device, memory_format=LAYOUTS[layout]).eval()


def zoo_optimized(dtype: str = "fp32", compile: bool = False) -> Callable[[nn.Module, ModelEntry, str], nn.Module]:
    """A builder of ``optimize_for_inference(model, dtype, compile=compile)`` in the input's layout (``compile``
    compiles on the first, warm-up call)."""
    return lambda model, entry, layout: optimize_for_inference(model, dtype, channels_last=layout == "nhwc",
                                                               compile=compile)


def timm_bf16(model: nn.Module, entry: ModelEntry, layout: str) -> nn.Module:
    """``timm_eager`` under ``torch.autocast(device, bfloat16)``: timm's usual bf16 inference path."""
    ref = timm_eager(model, entry, layout)
    ref.forward = torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16)(ref.forward)
    return ref


def zoo_int8_builder(resolution: int, num_images: int = 32, seed: int = 0) -> Callable[..., nn.Module]:
    """A builder of the int8 model (``quantize_model``: OpenVINO + NNCF, torch's thread count) calibrated on
    ``num_images`` random N(0, 1) images of ``resolution`` px: fine for timing, not for accuracy (calibrate
    on real images). The model takes either layout, so it is quantized once and shared by both."""
    @functools.lru_cache(maxsize=1)
    def quantized(model: nn.Module) -> nn.Module:
        images = torch.randn(num_images, model.in_chans, resolution, resolution,
                             generator=torch.Generator().manual_seed(seed))
        return quantize_model(model, images, num_images=num_images, threads=torch.get_num_threads())
    return lambda model, entry, layout: quantized(model)


BASELINE = "timm eager"  # ratios are to this variant in the first layout asked for


def default_variants(compile: bool = False, dtype: str = "fp32", resolution: int = 224) -> list[Variant]:
    """Our eager model, timm's, our BN-folded model (+ the compiled one with ``compile``), + per ``dtype``:
    "bf16", timm under bf16 autocast and our bf16 model (+ compiled); "int8", our OpenVINO int8 model."""
    out = [Variant("zoo eager", zoo_eager), Variant(BASELINE, timm_eager), Variant("zoo fused", zoo_optimized())]
    out += [Variant("zoo compiled", zoo_optimized(compile=True))] if compile else []
    if dtype == "bf16":
        out += [Variant("timm bf16 autocast", timm_bf16), Variant("zoo bf16", zoo_optimized("bf16"))]
        out += [Variant("zoo bf16 compiled", zoo_optimized("bf16", compile=True))] if compile else []
    elif dtype == "int8":
        out.append(Variant("zoo int8", zoo_int8_builder(resolution)))
    elif dtype != "fp32":
        raise ValueError(f"dtype must be fp32, bf16 or int8, got {dtype!r}")
    return out


def compare(name: str, *, batch: int = 8, layouts: Sequence[str] = ("nchw", "nhwc"),
            variants: Sequence[Variant] | None = None, resolution: int = 224, threads: int | None = None,
            device: str | torch.device = "cpu", warmup: int = 1, repeats: int = 5) -> dict[str, Any]:
    """Inference images/s of every variant in every layout of zoo model ``name`` (random init), interleaved.

    Returns a JSON-ready dict: the settings, ``baseline`` (the case ratios refer to) and ``rows``, one
    per case ``"<variant>@<layout>"``: ``images_per_s`` (median call), ``best_images_per_s`` (fastest
    call), ``spread``, ``times_s`` and ``ratio`` / ``ratio_best`` = images/s over the baseline's.
    ``warmup`` (>= 1) untimed calls per case come first: kernel selection, compilation.
    """
    if not layouts or any(lay not in LAYOUTS for lay in layouts):
        raise ValueError(f"layouts must be a non-empty subset of {sorted(LAYOUTS)}, got {list(layouts)}")
    if batch < 1 or resolution < 1 or warmup < 1:
        raise ValueError(f"need batch, resolution and warmup >= 1; got {batch}, {resolution}, {warmup}")
    entry = get_entry(name)
    variants = list(variants if variants is not None else default_variants())
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    with benchmark_settings(threads):
        torch.manual_seed(0)
        model = create(entry.name).to(device).eval()
        cases: dict[str, Callable[[], object]] = {}
        for layout in layouts:
            x = torch.randn(batch, model.in_chans, resolution, resolution, device=device)
            x = x.contiguous(memory_format=LAYOUTS[layout])
            for v in variants:
                if v.build in (timm_eager, timm_bf16) and not entry.timm_name:  # no timm twin (e.g. RegNetZ-4GF)
                    continue
                run = functools.partial(v.build(model, entry, layout), x)
                cases[f"{v.name}@{layout}"] = torch.inference_mode()(run)
        timings = time_interleaved(cases, batch, warmup=warmup, repeats=repeats, sync=sync)
        used_threads = torch.get_num_threads()
    baseline = f"{BASELINE}@{layouts[0]}"
    ref = timings.get(baseline) or next(iter(timings.values()))
    rows = [dict(case=n, variant=n.split("@")[0], layout=n.split("@")[1], dtype=_dtype_of(n),
                 images_per_s=t.images_per_s, best_images_per_s=t.best_images_per_s, spread=t.spread,
                 times_s=t.seconds, ratio=t.images_per_s / ref.images_per_s,
                 ratio_best=t.best_images_per_s / ref.best_images_per_s) for n, t in timings.items()]
    return dict(model=entry.name, batch=batch, resolution=resolution, device=str(device), threads=used_threads,
                dtype="+".join(sorted({_dtype_of(v.name) for v in variants})), warmup=warmup, repeats=repeats,
                torch=torch.__version__, timm=timm.__version__, baseline=ref.name, rows=rows)


def _dtype_of(variant: str) -> str:
    return "bf16" if "bf16" in variant else "int8" if "int8" in variant else "fp32"


def format_comparison(result: Mapping[str, Any]) -> str:
    """The printed table of a ``compare`` result: images/s and ratios to the baseline, per case."""
    r = result
    lines = [f"{r['model']}: batch {r['batch']}, {r['resolution']} px, {r['device']}, {r['threads']} threads, "
             f"{r['dtype']}; median of {r['repeats']} interleaved rounds",
             f"  {'case':<22} {'images/s':>10} {'fastest':>10} {'spread':>7}  vs {r['baseline']} (fastest calls)"]
    lines += [f"  {row['case']:<22} {row['images_per_s']:>10.2f} {row['best_images_per_s']:>10.2f} "
              f"{row['spread']:>7.2f}  {row['ratio']:.2f} ({row['ratio_best']:.2f})" for row in r["rows"]]
    return "\n".join(lines)
