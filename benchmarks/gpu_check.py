"""The GPU check of issue 12 (item 5), run by ``benchmarks/gpu_check.sh``: bf16 autocast inference and training steps.

For RegNetX-8.0GF and RegNetY-4.0GF (ours and timm's twin with the same weights) and timm's
EfficientNet-B5 @456, in NCHW and channels_last, eager and ``torch.compile``d: images/s of inference
(batch 256, ``torch.autocast(bfloat16)``, ``inference_mode``) and of a training step (batch 128,
autocast forward, backward, SGD step), each model's cases timed interleaved (``time_interleaved``),
with the achieved FLOP/s. ``--cpu-smoke`` runs the same code on the CPU at a tiny size (RegNetX-200MF,
batch 2, 32 px, eager only), so the script is exercised without a GPU.

    python benchmarks/gpu_check.py --json benchmarks/results/gpu-check-cuda.json
    python benchmarks/gpu_check.py --cpu-smoke --json smoke.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import timm
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness/ beside this script

from harness.models import efficientnet, zoo_complexity  # noqa: E402

import regnet_zoo  # noqa: E402
from regnet_zoo.fileio import atomic_write  # noqa: E402
from regnet_zoo.inference.speed import LAYOUTS, time_interleaved  # noqa: E402
from regnet_zoo.registry import get_entry  # noqa: E402

GPU = dict(models=("regnetx_8.0gf", "regnety_4.0gf", "efficientnet_b5"), infer_batch=256, train_batch=128,
           resolution=None, compile=(False, True), warmup=2, repeats=5, device="cuda")
CPU_SMOKE = dict(models=("regnetx_200mf",), infer_batch=2, train_batch=2, resolution=32, compile=(False,),
                 warmup=1, repeats=1, device="cpu")


def subjects(name: str, resolution: int | None) -> list[tuple[str, nn.Module, int, int]]:
    """(label, model, resolution, FLOPs per image) of ``name``: ours and timm's, or a timm EfficientNet."""
    if name.startswith("efficientnet_"):
        s = efficientnet(name.split("_", 1)[1])
        res = resolution or s.resolution
        return [(f"{name}/timm", s.model, res, s.flops * res**2 // s.resolution**2)]
    entry = get_entry(name)
    torch.manual_seed(0)
    zoo = regnet_zoo.create(entry.name)
    ref = timm.create_model(entry.timm_name)
    ref.load_state_dict(zoo.state_dict())
    res = resolution or 224
    flops = 2 * zoo_complexity(entry.name, res)["flops"]
    return [(f"{entry.name}/zoo", zoo, res, flops), (f"{entry.name}/timm", ref, res, flops)]


def cases(model: nn.Module, x: torch.Tensor, compiled: bool, train: bool):
    """A zero-argument callable running one bf16-autocast inference call or training step on ``x``."""
    device = x.device.type
    if not train:
        m = copy.deepcopy(model).eval()
        m = torch.compile(m) if compiled else m

        def infer() -> None:
            with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
                m(x)
        return infer
    m = copy.deepcopy(model).train()
    step_model = torch.compile(m) if compiled else m
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    y = torch.randint(0, 1000, (len(x),), device=x.device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(step_model(x), y)
        loss.backward()
        opt.step()
    return step


def run(cfg: dict, log=print) -> dict:
    device = torch.device(cfg["device"])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    rows = []
    for name in cfg["models"]:
        for mode, batch in (("infer", cfg["infer_batch"]), ("train", cfg["train_batch"])):
            fns, flops = {}, {}
            for label, model, res, f in subjects(name, cfg["resolution"]):
                for layout, fmt in LAYOUTS.items():
                    x = torch.randn(batch, 3, res, res, device=device).contiguous(memory_format=fmt)
                    base = model.to(device).to(memory_format=fmt)
                    for compiled in cfg["compile"]:
                        key = f"{label}@{layout}{'/compiled' if compiled else ''}"
                        fns[key], flops[key] = cases(base, x, compiled, mode == "train"), f * (3 if mode == "train"
                                                                                               else 1)
            start = time.perf_counter()
            timings = time_interleaved(fns, batch, warmup=cfg["warmup"], repeats=cfg["repeats"], sync=sync)
            log(f"{name} {mode} batch {batch}: {len(fns)} cases in {time.perf_counter() - start:.0f} s")
            for key, t in timings.items():
                rows.append(dict(model=name, mode=mode, case=key, batch=batch, images_per_s=t.images_per_s,
                                 best_images_per_s=t.best_images_per_s, spread=t.spread, times_s=t.seconds,
                                 flop_s=flops[key] * t.images_per_s))
                log(f"  {key:<44} {t.images_per_s:10.1f} img/s  {flops[key] * t.images_per_s / 1e12:7.2f} TFLOP/s")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return dict(benchmark="gpu_check", device=str(device), gpu=gpu, amp="bf16 autocast", torch=torch.__version__,
                timm=timm.__version__, settings={k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                loadavg=list(os.getloadavg()), rows=rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny CPU run of the same code (no GPU needed)")
    p.add_argument("--json", required=True, help="output file")
    a = p.parse_args(argv)
    if not a.cpu_smoke and not torch.cuda.is_available():
        p.error("no CUDA device here: run on a GPU machine, or pass --cpu-smoke")
    report = run(CPU_SMOKE if a.cpu_smoke else GPU)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(a.json, json.dumps(report, indent=1))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
