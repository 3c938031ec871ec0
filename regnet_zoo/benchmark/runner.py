"""``run_benchmark``: throughput (inference, training step), FLOP/s vs the measured peak, activation memory.

Groups of comparable models are timed interleaved (``timing.time_interleaved``): each zoo model with
timm's and torchvision's implementation of the same architecture, in NCHW and channels_last, plus our
optimised inference path; the EfficientNets together; and the paper's headline pair. Ratios are
computed only inside a group, i.e. from numbers measured side by side.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from regnet_zoo.benchmark.memory import cuda_training_peak_bytes, saved_activation_bytes
from regnet_zoo.benchmark.models import (
    EFFICIENTNET_RESOLUTION,
    HEADLINE,
    Subject,
    efficientnet,
    forward_flops,
    same_architecture,
)
from regnet_zoo.benchmark.peak import measure_peak
from regnet_zoo.benchmark.timing import Timing, time_interleaved
from regnet_zoo.counting import model_complexity
from regnet_zoo.inference import compile_model, fuse_bn, to_channels_last
from regnet_zoo.registry import get_entry

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
TRAIN_FLOPS_FACTOR = 3  # forward + backward (~2x forward) per training step


@dataclass
class BenchConfig:
    """What to measure. Times are per batch; see ``docs/deploy.md`` for the presets."""

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
    layouts: tuple[str, ...] = ("nchw", "nhwc")
    compile: bool = False
    peak: bool = True

    def __post_init__(self) -> None:
        bad = [x for x in self.layouts if x not in LAYOUTS]
        if bad or not self.layouts:
            raise ValueError(f"layouts must be a non-empty subset of {sorted(LAYOUTS)}, got {self.layouts}")
        for m in self.models:
            get_entry(m)  # unknown names fail here, listing the closest ones
        bad = [v for v in self.efficientnets if v.lower().removeprefix("efficientnet_") not in EFFICIENTNET_RESOLUTION]
        if bad:
            raise ValueError(f"unknown EfficientNet variant(s) {bad}; choose from {', '.join(EFFICIENTNET_RESOLUTION)}")


@dataclass
class Report:
    """Everything one run measured (``asdict`` gives the JSON)."""

    config: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    inference: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    headline: list[dict[str, Any]] = field(default_factory=list)
    correlation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


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


def _rows(timings: dict[str, Timing], meta: dict[str, dict[str, Any]], env: _Env, factor: int) -> list[dict]:
    rows = []
    for name, t in timings.items():
        m = meta[name]
        achieved = m["flops"] * factor * t.images_per_s
        rows.append(dict(name=name, **m, batch=t.batch, images_per_s=t.images_per_s, median_s=t.median_s,
                         best_images_per_s=t.best_images_per_s, spread=t.spread, times_s=t.seconds,
                         flops_per_s=achieved, fraction_of_peak=None))  # set once the peak is final
    return rows


def _ratio(rows: list[dict], a: str, b: str, what: str, mode: str) -> dict[str, Any] | None:
    by = {r["name"]: r for r in rows}
    if a not in by or b not in by:
        return None
    return dict(mode=mode, what=what, a=a, b=b, ratio=by[a]["images_per_s"] / by[b]["images_per_s"],
                ratio_best=by[a]["best_images_per_s"] / by[b]["best_images_per_s"])


def _time_group(env: _Env, cfg: BenchConfig, cases: dict[str, Callable[[], object]],
                batch: dict[str, int]) -> dict[str, Timing]:
    return time_interleaved(cases, batch, warmup=cfg.warmup, repeats=cfg.repeats, iters=cfg.iters, sync=env.sync)


def _bench_arch(env: _Env, cfg: BenchConfig, name: str, rep: Report, log: Callable[[str], None]) -> None:
    subjects = same_architecture(name, cfg.torchvision)
    for s in subjects:
        s.model.to(env.device)
    zoo = subjects[0]
    flops = {s.impl: forward_flops(s.model, s.resolution) for s in subjects}
    arch = zoo.arch
    if cfg.infer:
        cases, meta = {}, {}
        for layout in cfg.layouts:
            x = _images(env, cfg.batch, zoo.resolution, layout)
            for s in subjects:
                key = f"{s.label}@{layout}"
                cases[key] = _infer_fn(env, _layout_copy(s.model, layout).eval(), x)
                meta[key] = dict(arch=arch, impl=s.impl, layout=layout, resolution=s.resolution, flops=flops[s.impl])
        x = _images(env, cfg.batch, zoo.resolution, "nhwc")
        fused = to_channels_last(fuse_bn(zoo.model))
        variants = {f"{arch}/zoo-fused@nhwc": fused}
        if cfg.compile:
            compiled = compile_model(fused)
            log(f"[infer] {arch}: compiling (torch.compile, inductor freezing)")
            _infer_fn(env, compiled, x)()  # compile outside the timed calls
            variants[f"{arch}/zoo-fused-compiled@nhwc"] = compiled
        for key, model in variants.items():
            cases[key] = _infer_fn(env, model, x)
            meta[key] = dict(arch=arch, impl=key.split("/")[1].split("@")[0], layout="nhwc",
                             resolution=zoo.resolution, flops=flops["zoo"])
        log(f"[infer] {arch}: {len(cases)} cases, batch {cfg.batch}")
        rows = _rows(_time_group(env, cfg, cases, {k: cfg.batch for k in cases}), meta, env, 1)
        rep.inference += rows
        for layout in cfg.layouts:
            for other in ("timm", "torchvision"):
                rep.ratios.append(_ratio(rows, f"{arch}/zoo@{layout}", f"{arch}/{other}@{layout}",
                                         f"zoo eager / {other} eager ({layout})", "infer"))
        for key in variants:
            rep.ratios.append(_ratio(rows, key, f"{arch}/timm@nchw", f"{key.split('/')[1]} / timm eager (nchw)",
                                     "infer"))
    if cfg.train:
        cases, meta = {}, {}
        for layout in cfg.layouts:
            x = _images(env, cfg.train_batch, zoo.resolution, layout)
            for s in subjects:
                key = f"{s.label}@{layout}"
                cases[key] = _train_fn(env, _layout_copy(s.model, layout), x)
                meta[key] = dict(arch=arch, impl=s.impl, layout=layout, resolution=s.resolution, flops=flops[s.impl])
        log(f"[train] {arch}: {len(cases)} cases, batch {cfg.train_batch}")
        rows = _rows(_time_group(env, cfg, cases, {k: cfg.train_batch for k in cases}), meta, env,
                     TRAIN_FLOPS_FACTOR)
        rep.training += rows
        for layout in cfg.layouts:
            for other in ("timm", "torchvision"):
                rep.ratios.append(_ratio(rows, f"{arch}/zoo@{layout}", f"{arch}/{other}@{layout}",
                                         f"zoo eager / {other} eager ({layout})", "train"))
    if cfg.memory:
        rep.memory.append(_memory_row(env, cfg, zoo))
    rep.ratios = [r for r in rep.ratios if r is not None]


def _memory_row(env: _Env, cfg: BenchConfig, s: Subject) -> dict[str, Any]:
    model = s.model.train()
    x = _images(env, cfg.memory_batch, s.resolution, "nchw", s.in_chans)
    if env.cuda:
        measured, how = cuda_training_peak_bytes(model, x, env.amp_dtype), "cuda max_memory_allocated (fwd+bwd)"
    else:
        measured, how = saved_activation_bytes(model, x), "bytes saved for backward"
    row = dict(name=s.label, arch=s.arch, impl=s.impl, batch=cfg.memory_batch, resolution=s.resolution,
               measured_bytes=measured, method=how)
    if s.impl == "zoo":
        cx = model_complexity(get_entry(s.arch).cfg, resolution=s.resolution)
        elem = 2 if env.amp_dtype is not None else 4
        row.update(flops=cx["flops"], params=cx["params"], acts=cx["acts"],
                   analytic_bytes=cx["acts"] * cfg.memory_batch * elem,
                   measured_per_analytic=measured / (cx["acts"] * cfg.memory_batch * elem))
    return row


def _bench_efficientnets(env: _Env, cfg: BenchConfig, rep: Report, log: Callable[[str], None]) -> None:
    subjects = [efficientnet(v) for v in cfg.efficientnets]
    for s in subjects:
        s.model.to(env.device)
    for mode, batch, factor, make, target in (("infer", cfg.batch, 1, _infer_fn, rep.inference),
                                              ("train", cfg.train_batch, TRAIN_FLOPS_FACTOR, _train_fn, rep.training)):
        if not (cfg.infer if mode == "infer" else cfg.train):
            continue
        cases, meta = {}, {}
        for layout in cfg.layouts:
            for s in subjects:
                key = f"{s.label}@{layout}"
                model = _layout_copy(s.model, layout)
                cases[key] = make(env, model.eval() if mode == "infer" else model,
                                  _images(env, batch, s.resolution, layout))
                meta[key] = dict(arch=s.arch, impl="timm", layout=layout, resolution=s.resolution,
                                 flops=forward_flops(s.model, s.resolution))
        log(f"[{mode}] efficientnets: {len(cases)} cases, batch {batch}")
        target += _rows(_time_group(env, cfg, cases, {k: batch for k in cases}), meta, env, factor)
    if cfg.memory:
        rep.memory += [_memory_row(env, cfg, s) for s in subjects]


def _bench_headline(env: _Env, cfg: BenchConfig, rep: Report, log: Callable[[str], None]) -> None:
    regnet, b = HEADLINE
    zoo = same_architecture(regnet, with_torchvision=False)[0]
    eff = efficientnet(b)
    fused = to_channels_last(fuse_bn(zoo.model.to(env.device)))
    eff.model.to(env.device)
    for mode, batch, make in (("infer", cfg.batch, _infer_fn), ("train", cfg.train_batch, _train_fn)):
        if not (cfg.infer if mode == "infer" else cfg.train):
            continue
        cases = {f"{regnet}/zoo@nchw": make(env, zoo.model.eval() if mode == "infer" else zoo.model,
                                            _images(env, batch, zoo.resolution, "nchw")),
                 f"{eff.arch}@nchw": make(env, eff.model.eval() if mode == "infer" else eff.model,
                                          _images(env, batch, eff.resolution, "nchw"))}
        if mode == "infer":
            cases[f"{regnet}/zoo-fused@nhwc"] = _infer_fn(env, fused, _images(env, batch, zoo.resolution, "nhwc"))
        log(f"[{mode}] headline {regnet} @{zoo.resolution} vs {eff.arch} @{eff.resolution}")
        t = _time_group(env, cfg, cases, {k: batch for k in cases})
        ref = t[f"{eff.arch}@nchw"].images_per_s
        for key, timing in t.items():
            if key.startswith(regnet):
                rep.headline.append(dict(mode=mode, a=key, b=f"{eff.arch}@nchw", ratio=timing.images_per_s / ref,
                                         a_images_per_s=timing.images_per_s, b_images_per_s=ref))


def _correlation(rep: Report) -> dict[str, float]:
    """Pearson r of log(train time per image) with log(acts) and log(flops) over the zoo models."""
    mem = {m["arch"]: m for m in rep.memory if m["impl"] == "zoo"}
    rows = [r for r in rep.training if r["impl"] == "zoo" and r["layout"] == "nchw" and r["arch"] in mem]
    if len(rows) < 3:
        return {}
    t = np.log([1.0 / r["images_per_s"] for r in rows])
    acts = np.log([mem[r["arch"]]["acts"] for r in rows])
    flops = np.log([mem[r["arch"]]["flops"] for r in rows])
    measured = np.log([mem[r["arch"]]["measured_bytes"] for r in rows])
    return dict(n_models=len(rows), r_time_acts=float(np.corrcoef(t, acts)[0, 1]),
                r_time_flops=float(np.corrcoef(t, flops)[0, 1]),
                r_memory_acts=float(np.corrcoef(measured, acts)[0, 1]),
                r_memory_flops=float(np.corrcoef(measured, flops)[0, 1]))


def _measure_peak(env: _Env, rep: Report, log: Callable[[str], None]) -> None:
    peak = measure_peak(env.device, env.amp_dtype or torch.float32)
    log(f"peak: {peak.flops_per_s / 1e9:.0f} GFLOP/s ({peak.dtype}, 1x1 conv {peak.shape})")
    if peak.flops_per_s > env.peak:
        env.peak = peak.flops_per_s
        rep.machine.update(peak_flops_per_s=peak.flops_per_s, peak_shape=peak.shape, peak_dtype=peak.dtype,
                           peak_method="best channels_last 1x1 conv (batch, c_in, c_out, size), "
                                       "measured before and after the models")


def run_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> Report:
    """Measure everything ``cfg`` asks for; returns the ``Report`` (the caller prints/saves it)."""
    start = time.perf_counter()
    env = _Env(cfg)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # denormals can slow CPU kernels arbitrarily; weights here are random
    rep = Report(config=asdict(cfg))
    try:
        rep.machine = dict(device=str(env.device), threads=cfg.threads, torch=torch.__version__,
                           amp=str(env.amp_dtype).replace("torch.", "") if env.amp_dtype else "fp32",
                           gpu=torch.cuda.get_device_name(env.device) if env.cuda else None)
        if cfg.peak:
            _measure_peak(env, rep, log)
        for name in cfg.models:
            _bench_arch(env, cfg, name, rep, log)
        if cfg.efficientnets:
            _bench_efficientnets(env, cfg, rep, log)
        if cfg.headline:
            _bench_headline(env, cfg, rep, log)
        if cfg.peak:
            _measure_peak(env, rep, log)  # again at the end: the better of the two (load may have changed)
            for row in rep.inference + rep.training:
                row["fraction_of_peak"] = row["flops_per_s"] / env.peak
        rep.correlation = _correlation(rep)
    finally:
        torch.set_num_threads(threads_before)
    rep.seconds = time.perf_counter() - start
    return rep


def summary(rep: Report) -> str:
    """Human-readable tables, ratios, goal lines and the headline."""
    lines = [f"device {rep.machine.get('device')} ({rep.machine.get('gpu') or 'CPU'}), "
             f"{rep.machine.get('threads')} threads, {rep.machine.get('amp')}"]
    if rep.machine.get("peak_flops_per_s"):
        lines.append(f"measured peak: {rep.machine['peak_flops_per_s'] / 1e9:.1f} GFLOP/s "
                     f"({rep.machine['peak_method']} {tuple(rep.machine['peak_shape'])})")
    for title, rows in (("inference", rep.inference), ("training step", rep.training)):
        if not rows:
            continue
        lines += ["", f"{title}: images/s (median call; fastest call; spread = (max-min)/median), "
                  "GFLOP/s and fraction of peak (median)",
                  f"  {'model':<44} {'res':>4} {'img/s':>9} {'fastest':>9} {'spread':>7} {'GFLOP/s':>8} {'peak':>6}"]
        for r in rows:
            frac = f"{r['fraction_of_peak']:.2f}" if r["fraction_of_peak"] is not None else "-"
            lines.append(f"  {r['name']:<44} {r['resolution']:>4} {r['images_per_s']:>9.2f} "
                         f"{r['best_images_per_s']:>9.2f} {r['spread']:>7.2f} {r['flops_per_s'] / 1e9:>8.1f} {frac:>6}")
    if rep.ratios:
        lines += ["", "ratios of images/s measured side by side (> 1: the first is faster), of the median calls "
                  "and of the fastest calls:"]
        lines += [f"  [{r['mode']}] {r['what']:<48} {r['ratio']:.3f}  (fastest {r['ratio_best']:.3f})"
                  for r in rep.ratios]
        lines += _goal_lines(rep)
    if rep.memory:
        lines += ["", "training activation memory (measured) vs analytic activations (pycls count):"]
        for m in rep.memory:
            extra = (f" acts {m['acts'] / 1e6:.2f}M -> {m['analytic_bytes'] / 2**20:.1f} MiB analytic, "
                     f"measured/analytic {m['measured_per_analytic']:.2f}; flops {m['flops'] / 1e9:.2f}G"
                     if "acts" in m else "")
            lines.append(f"  {m['name']:<28} batch {m['batch']} @{m['resolution']}: "
                         f"{m['measured_bytes'] / 2**20:.1f} MiB ({m['method']});{extra}")
    if rep.correlation:
        c = rep.correlation
        lines.append(f"  over {c['n_models']} zoo models, Pearson r of log train time/image with log acts "
                     f"{c['r_time_acts']:.3f} vs log flops {c['r_time_flops']:.3f}; of log memory with log acts "
                     f"{c['r_memory_acts']:.3f} vs log flops {c['r_memory_flops']:.3f}")
    for h in rep.headline:
        lines.append(f"HEADLINE [{h['mode']}] {h['a']} vs {h['b']}: {h['ratio']:.2f}x "
                     f"({h['a_images_per_s']:.2f} vs {h['b_images_per_s']:.2f} img/s; paper: ~5x on GPU)")
    lines.append(f"total {rep.seconds:.0f} s")
    return "\n".join(lines)


def _goal_lines(rep: Report) -> list[str]:
    out = []
    eager = [r for r in rep.ratios if r["mode"] == "infer" and r["what"].startswith("zoo eager / timm")]
    opt: dict[str, float] = {}
    for r in rep.ratios:
        if r["mode"] == "infer" and r["what"].startswith("zoo-fused"):
            arch = r["a"].split("/")[0]
            opt[arch] = max(opt.get(arch, 0.0), r["ratio"])
    if eager:
        worst = min(r["ratio"] for r in eager)
        out.append(f"GOAL zoo eager >= timm eager (same weights): worst ratio {worst:.3f} "
                   f"(fastest calls {min(r['ratio_best'] for r in eager):.3f}) "
                   f"-> {'met' if worst >= 0.97 else 'NOT met'} (0.97 allows for timing noise)")
    if opt:
        worst = min(opt.values())
        out.append(f"GOAL optimised inference >= 1.5x timm eager (nchw): worst model {worst:.2f}x "
                   f"-> {'met' if worst >= 1.5 else 'NOT met'}")
    return out
