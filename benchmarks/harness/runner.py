"""``run_benchmark``: throughput (inference, training step), FLOP/s vs the measured peak, training memory.

Groups of comparable models are timed interleaved (``regnet_zoo.inference.speed.time_interleaved``):
each zoo model with timm's and torchvision's implementation of the same architecture, in NCHW and
channels_last, plus our
optimised inference path; and each EfficientNet with its flops-matched RegNets of the paper's Table 4
(the RegNetX-8.0GF vs EfficientNet-B5 headline is one of these pairs). Ratios are computed only
inside a group, i.e. from numbers measured side by side.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.memory import (
    CUDA_PEAK_METHOD,
    PROCESS_PEAK_METHOD,
    SAVED_METHOD,
    cuda_training_peak_bytes,
    process_training_peak_bytes,
    saved_activation_bytes,
)
from harness.models import (
    FLOPS_MATCHED,
    HEADLINE,
    Subject,
    efficientnet,
    efficientnet_variant,
    same_architecture,
    zoo_model,
)
from harness.peak import measure_peak
from harness.report import Report
from regnet_zoo.inference import compile_model, fuse_bn, to_channels_last
from regnet_zoo.inference.speed import LAYOUTS, Timing, benchmark_settings, time_interleaved
from regnet_zoo.registry import get_entry

TRAIN_FLOPS_FACTOR = 3  # forward + backward (~2x forward) per training step


@dataclass
class BenchConfig:
    """What to measure. Batches are images per call; see ``docs/deploy.md`` for the presets.

    ``efficientnets``: variants ("b0".."b7"), each timed side by side with its flops-matched RegNets
    (``models.FLOPS_MATCHED``, the paper's Table 4; B6/B7 have none and are timed alone).
    ``headline``: RegNetX-8.0GF vs EfficientNet-B5 (timed with the B5 pair, added if B5 is not asked for).
    ``peak_memory``: besides the bytes saved for backward, measure the step's peak memory (CPU: one
    fresh subprocess per model; CUDA: the allocator's peak).
    """

    models: tuple[str, ...] = ("regnetx_200mf",)
    efficientnets: tuple[str, ...] = ()
    headline: bool = False
    torchvision: bool = True
    batch: int = 8
    train_batch: int = 8
    memory_batch: int = 8
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (CPU runs fp32)
    threads: int = 2
    warmup: int = 1
    repeats: int = 5
    iters: int = 1
    infer: bool = True
    train: bool = True
    memory: bool = True
    peak_memory: bool = True
    layouts: tuple[str, ...] = ("nchw", "nhwc")
    compile: bool = False
    peak: bool = True

    def __post_init__(self) -> None:
        bad = [x for x in self.layouts if x not in LAYOUTS]
        if bad or not self.layouts:
            raise ValueError(f"layouts must be a non-empty subset of {sorted(LAYOUTS)}, got {self.layouts}")
        for m in self.models:
            get_entry(m)  # unknown names fail here, listing the closest ones
        bad = []
        for v in self.efficientnets:
            try:
                efficientnet_variant(v)
            except ValueError:
                bad.append(v)
        if bad:
            raise ValueError(f"unknown EfficientNet variant(s) {bad}; choose from b0, b1, b2, b3, b4, b5, b6, b7")

    def pairs(self) -> list[tuple[str, tuple[str, ...]]]:
        """(EfficientNet variant, its flops-matched zoo RegNets) groups to time, the headline's included."""
        out: dict[str, tuple[str, ...]] = {}
        for v in self.efficientnets:
            v = efficientnet_variant(v)
            out[v] = FLOPS_MATCHED.get(v, ())
        regnet, b = HEADLINE
        if self.headline and regnet not in out.get(b, ()):
            out[b] = (*out.get(b, ()), regnet)
        return list(out.items())


class _Env:
    def __init__(self, cfg: BenchConfig):
        if cfg.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if (self.cuda and cfg.amp) else None
        self.sync = (lambda: torch.cuda.synchronize(self.device)) if self.cuda else None
        self.peak = 0.0

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)


def _images(env: _Env, batch: int, res: int, layout: str, in_chans: int = 3) -> torch.Tensor:
    x = torch.randn(batch, in_chans, res, res, device=env.device)
    return x.contiguous(memory_format=LAYOUTS[layout])


def _infer_fn(env: _Env, model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad(), env.autocast():
            return model(x)
    return run


def _train_fn(env: _Env, model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    target = torch.randint(0, 1000, (x.shape[0],), device=x.device)

    def step() -> object:
        with env.autocast():
            loss = F.cross_entropy(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def _layout_copy(model: nn.Module, layout: str) -> nn.Module:
    return to_channels_last(copy.deepcopy(model)) if layout == "nhwc" else model


def _rows(timings: dict[str, Timing], meta: dict[str, dict[str, Any]], factor: int) -> list[dict]:
    rows = []
    for name, t in timings.items():
        m = meta[name]
        achieved = m["flops"] * factor * t.images_per_s
        rows.append(dict(name=name, **m, batch=t.batch, images_per_s=t.images_per_s, median_s=t.median_s,
                         best_images_per_s=t.best_images_per_s, spread=t.spread, times_s=t.seconds,
                         flops_per_s=achieved, fraction_of_peak=None))  # set once the peak is final
    return rows


def _ratio(rows: list[dict], a: str, b: str, what: str, mode: str, **extra: Any) -> dict[str, Any] | None:
    by = {r["name"]: r for r in rows}
    if a not in by or b not in by:
        return None
    return dict(mode=mode, what=what, a=a, b=b, **extra, ratio=by[a]["images_per_s"] / by[b]["images_per_s"],
                ratio_best=by[a]["best_images_per_s"] / by[b]["best_images_per_s"],
                a_images_per_s=by[a]["images_per_s"], b_images_per_s=by[b]["images_per_s"])


def _time_group(env: _Env, cfg: BenchConfig, cases: dict[str, Callable[[], object]],
                meta: dict[str, dict[str, Any]], batch: int, factor: int) -> list[dict]:
    t = time_interleaved(cases, batch, warmup=cfg.warmup, repeats=cfg.repeats, iters=cfg.iters, sync=env.sync)
    return _rows(t, meta, factor)


def _meta(s: Subject, layout: str, group: str, impl: str | None = None) -> dict[str, Any]:
    return dict(arch=s.arch, impl=impl or s.impl, layout=layout, resolution=s.resolution, flops=s.flops, group=group)


def _fused_variants(env: _Env, cfg: BenchConfig, zoo: Subject, log: Callable[[str], None],
                    compile: bool) -> dict[str, nn.Module]:
    """Our optimised inference path: BN folded + channels_last (+ torch.compile with inductor freezing)."""
    fused = to_channels_last(fuse_bn(zoo.model))
    variants = {f"{zoo.arch}/zoo-fused@nhwc": fused}
    if compile:
        compiled = compile_model(fused)
        log(f"[infer] {zoo.arch}: compiling (torch.compile, inductor freezing)")
        _infer_fn(env, compiled, _images(env, cfg.batch, zoo.resolution, "nhwc"))()  # compile outside the timing
        variants[f"{zoo.arch}/zoo-fused-compiled@nhwc"] = compiled
    return variants


def _bench_arch(env: _Env, cfg: BenchConfig, name: str, rep: Report, log: Callable[[str], None]) -> None:
    subjects = same_architecture(name, cfg.torchvision)
    for s in subjects:
        s.model.to(env.device)
    zoo = subjects[0]
    arch, group = zoo.arch, f"arch:{zoo.arch}"
    for mode, batch in (("infer", cfg.batch), ("train", cfg.train_batch)):
        if not (cfg.infer if mode == "infer" else cfg.train):
            continue
        cases, meta = {}, {}
        for layout in cfg.layouts:
            x = _images(env, batch, zoo.resolution, layout)
            for s in subjects:
                key = f"{s.label}@{layout}"
                model = _layout_copy(s.model, layout)
                cases[key] = _infer_fn(env, model.eval(), x) if mode == "infer" else _train_fn(env, model, x)
                meta[key] = _meta(s, layout, group)
        variants = _fused_variants(env, cfg, zoo, log, cfg.compile) if mode == "infer" else {}
        x = _images(env, batch, zoo.resolution, "nhwc")
        for key, model in variants.items():
            cases[key] = _infer_fn(env, model, x)
            meta[key] = _meta(zoo, "nhwc", group, impl=key.split("/")[1].split("@")[0])
        log(f"[{mode}] {arch}: {len(cases)} cases, batch {batch}")
        rows = _time_group(env, cfg, cases, meta, batch, 1 if mode == "infer" else TRAIN_FLOPS_FACTOR)
        (rep.inference if mode == "infer" else rep.training).extend(rows)
        for layout in cfg.layouts:
            for other in ("timm", "torchvision"):
                rep.ratios.append(_ratio(rows, f"{arch}/zoo@{layout}", f"{arch}/{other}@{layout}",
                                         f"zoo eager / {other} eager ({layout})", mode, arch=arch))
        for key in variants:
            rep.ratios.append(_ratio(rows, key, f"{arch}/timm@nchw", f"{key.split('/')[1].split('@')[0]} / timm "
                                     "eager (nchw)", mode, arch=arch))
    rep.ratios = [r for r in rep.ratios if r is not None]


def _bench_pair(env: _Env, cfg: BenchConfig, variant: str, regnets: tuple[str, ...], rep: Report,
                log: Callable[[str], None]) -> None:
    """One EfficientNet and its flops-matched RegNets, timed interleaved; RegNet / EfficientNet ratios.

    Both sides run the same batch; on CUDA the training batch shrinks with the EfficientNet's pixel count
    (B5 at 456 px: 128 -> 32) so that its activations fit.
    """
    eff = efficientnet(variant)
    zoos = [zoo_model(n) for n in regnets]
    for s in (eff, *zoos):
        s.model.to(env.device)
    group = f"pair:{eff.arch}"
    train_batch = cfg.train_batch
    if env.cuda:
        train_batch = min(train_batch, max(1, 2 ** round(math.log2(train_batch * (224 / eff.resolution) ** 2))))
    for mode, batch in (("infer", cfg.batch), ("train", train_batch)):
        if not (cfg.infer if mode == "infer" else cfg.train):
            continue
        cases, meta = {}, {}
        for layout in cfg.layouts:
            for s in (eff, *zoos):
                key = f"{s.label}@{layout}"
                model, x = _layout_copy(s.model, layout), _images(env, batch, s.resolution, layout)
                cases[key] = _infer_fn(env, model.eval(), x) if mode == "infer" else _train_fn(env, model, x)
                meta[key] = _meta(s, layout, group)
        if mode == "infer":
            for zoo in zoos:
                x = _images(env, batch, zoo.resolution, "nhwc")
                for key, model in _fused_variants(env, cfg, zoo, log, compile=False).items():
                    cases[key] = _infer_fn(env, model, x)
                    meta[key] = _meta(zoo, "nhwc", group, impl=key.split("/")[1].split("@")[0])
        regnet_names = ", ".join(f"{z.arch} @{z.resolution}" for z in zoos) or "no flops-matched RegNet"
        log(f"[{mode}] {regnet_names} vs {eff.arch} @{eff.resolution}: {len(cases)} cases, batch {batch}")
        rows = _time_group(env, cfg, cases, meta, batch, 1 if mode == "infer" else TRAIN_FLOPS_FACTOR)
        (rep.inference if mode == "infer" else rep.training).extend(rows)
        by = {r["name"]: r for r in rows}
        best_layout = max(cfg.layouts, key=lambda lay: by[f"{eff.label}@{lay}"]["images_per_s"])
        for zoo in zoos:
            extra = dict(regnet=zoo.arch, efficientnet=eff.arch, regnet_resolution=zoo.resolution,
                         efficientnet_resolution=eff.resolution)
            found = [_ratio(rows, f"{zoo.label}@{lay}", f"{eff.label}@{lay}", f"eager {lay}", mode, **extra)
                     for lay in cfg.layouts]
            for key in (k for k in cases if k.startswith(f"{zoo.arch}/zoo-fused")):
                impl = key.split("/")[1].split("@")[0]
                found.append(_ratio(rows, key, f"{eff.label}@{best_layout}", f"{impl} nhwc / eager best layout",
                                    mode, **extra))
            rep.pairs += [r for r in found if r is not None]
    regnet, b = HEADLINE
    if variant == b and regnet in regnets:
        rep.headline += [p for p in rep.pairs if p["regnet"] == regnet and p["efficientnet"] == eff.arch
                         and p["what"] in ("eager nchw", "zoo-fused nhwc / eager best layout")]


def _memory_row(env: _Env, cfg: BenchConfig, s: Subject) -> dict[str, Any]:
    model = s.model.to(env.device).train()
    x = _images(env, cfg.memory_batch, s.resolution, "nchw", s.in_chans)
    with env.autocast():
        saved = saved_activation_bytes(model, x)
    elem = 2 if env.amp_dtype is not None else 4
    analytic = s.complexity["acts"] * cfg.memory_batch * elem
    row = dict(name=s.label, arch=s.arch, impl=s.impl, batch=cfg.memory_batch, resolution=s.resolution,
               flops=s.complexity["flops"], params=s.complexity["params"], acts=s.complexity["acts"],
               acts_count="pycls (exact)" if s.impl == "zoo" else "traced conv/linear outputs",
               analytic_bytes=analytic, saved_for_backward_bytes=saved, saved_method=SAVED_METHOD,
               saved_per_analytic=saved / analytic, peak_bytes=None, peak_method=None, peak_per_analytic=None)
    if cfg.peak_memory:
        if env.cuda:
            peak, method = cuda_training_peak_bytes(model, x, env.amp_dtype), CUDA_PEAK_METHOD
        else:
            peak = process_training_peak_bytes(s.arch, cfg.memory_batch, s.resolution, threads=cfg.threads)
            method = PROCESS_PEAK_METHOD
        row.update(peak_bytes=peak, peak_method=method, peak_per_analytic=peak / analytic)
    return row


def _bench_memory(env: _Env, cfg: BenchConfig, rep: Report, log: Callable[[str], None]) -> None:
    archs = list(dict.fromkeys([*cfg.models, *(n for _, regnets in cfg.pairs() for n in regnets)]))
    effs = [f"efficientnet_{v}" for v, _ in cfg.pairs()]
    for name in archs + effs:
        log(f"[memory] {name}, batch {cfg.memory_batch}")
        s = efficientnet(name) if name in effs else zoo_model(name)
        rep.memory.append(_memory_row(env, cfg, s))
        del s


def _correlation(rep: Report) -> dict[str, float]:
    """Pearson r of log(train time per image) and log(memory) with log(acts) and log(flops), zoo models."""
    mem = {m["arch"]: m for m in rep.memory if m["impl"] == "zoo"}
    rows = {r["arch"]: r for r in rep.training if r["impl"] == "zoo" and r["layout"] == "nchw" and r["arch"] in mem}
    if len(rows) < 3:
        return {}
    archs = sorted(rows)
    t = np.log([1.0 / rows[a]["images_per_s"] for a in archs])
    acts = np.log([mem[a]["acts"] for a in archs])
    flops = np.log([mem[a]["flops"] for a in archs])
    saved = np.log([mem[a]["saved_for_backward_bytes"] for a in archs])
    out = dict(n_models=len(archs), r_time_acts=float(np.corrcoef(t, acts)[0, 1]),
               r_time_flops=float(np.corrcoef(t, flops)[0, 1]),
               r_saved_acts=float(np.corrcoef(saved, acts)[0, 1]),
               r_saved_flops=float(np.corrcoef(saved, flops)[0, 1]))
    if all(mem[a]["peak_bytes"] for a in archs):
        peak = np.log([mem[a]["peak_bytes"] for a in archs])
        out.update(r_peak_acts=float(np.corrcoef(peak, acts)[0, 1]), r_peak_flops=float(np.corrcoef(peak, flops)[0, 1]))
    return out


def _measure_peak(env: _Env, rep: Report, log: Callable[[str], None]) -> None:
    peak = measure_peak(env.device, env.amp_dtype or torch.float32)
    log(f"peak: {peak.flops_per_s / 1e9:.0f} GFLOP/s ({peak.dtype}, 1x1 conv {peak.shape})")
    if peak.flops_per_s > env.peak:
        env.peak = peak.flops_per_s
        rep.machine.update(peak_flops_per_s=peak.flops_per_s, peak_shape=peak.shape, peak_dtype=peak.dtype,
                           peak_method="channels_last 1x1 convolutions (batch, c_in, c_out, size), the best shape, "
                                       "measured before and after the models")


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> Report:
    """Measure everything ``cfg`` asks for; returns the ``Report`` (the caller prints/saves it).

    torch's thread count and denormal flushing are set for the run and restored afterwards.
    """
    start = time.perf_counter()
    env = _Env(cfg)
    rep = Report(config=asdict(cfg))
    with benchmark_settings(cfg.threads):
        rep.machine = dict(device=str(env.device), threads=cfg.threads, torch=torch.__version__,
                           amp=str(env.amp_dtype).replace("torch.", "") if env.amp_dtype else "fp32",
                           gpu=torch.cuda.get_device_name(env.device) if env.cuda else None)
        if cfg.peak:
            _measure_peak(env, rep, log)
        for name in cfg.models:
            _bench_arch(env, cfg, name, rep, log)
        for variant, regnets in cfg.pairs():
            _bench_pair(env, cfg, variant, regnets, rep, log)
        if cfg.memory:
            _bench_memory(env, cfg, rep, log)
        if cfg.peak:
            _measure_peak(env, rep, log)  # again at the end: the better of the two (load may have changed)
            for row in rep.inference + rep.training:
                row["fraction_of_peak"] = row["flops_per_s"] / env.peak
        rep.correlation = _correlation(rep)
    rep.seconds = time.perf_counter() - start
    return rep
