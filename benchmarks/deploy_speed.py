"""The deployment benchmark of regnet-zoo: zoo models vs timm / torchvision / EfficientNet-B0..B5.

The full protocol (``harness/``, beside this script; ``regnet-zoo benchmark`` is the package's thin
same-architecture comparison): per model (RegNetX-200MF, -800MF, -1.6GF, RegNetY-4.0GF, RegNetX-8.0GF)
eager NCHW and channels_last inference and training steps of our model, timm's and torchvision's, and
our BN-fused channels_last and torch.compile'd inference; the flops-matched pairs of the paper's Table 4
(RegNetY-400MF/B0, Y-600MF/B1, Y-800MF/B2, Y-1.6GF/B3, Y-4.0GF/B4, X-8.0GF and Y-8.0GF/B5, EfficientNets
at their native resolutions) timed side by side, whose X-8.0GF/B5 pair is the headline; FLOP/s as a
fraction of the measured peak; training-step memory (bytes saved for backward and the measured peak) vs
the analytic activations. The full preset writes ``benchmarks/results/deploy-<device>.json`` and ``.png``
(unless --json or --plot name other files) and prints a summary. Run it on a quiet machine::

    python benchmarks/deploy_speed.py                # CPU, 2 threads, quiet machine: about 15-45 min, < 10 GB RAM
    python benchmarks/deploy_speed.py --device cuda  # GPU, bf16 autocast, batch 256 / 128
    python benchmarks/deploy_speed.py --preset quick --models regnety_1.6gf --efficientnets b3 --modes infer
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from harness import BenchConfig, run_benchmark, summary

from regnet_zoo.fileio import atomic_write
from regnet_zoo.registry import UnknownModelError

RESULTS = Path(__file__).resolve().parent / "results"
# explicit options override the preset
PRESETS: dict[str, dict[str, object]] = {
    "quick": dict(models="regnetx_200mf", efficientnets="b0", headline=False, compile=False, repeats=3, warmup=1,
                  batch=4, train_batch=4, memory_batch=4),
    # CPU, 2 threads, quiet machine: about 15-30 minutes, < 10 GB RAM (B5 @456 keeps ~1.3 GB per image for backward)
    "full": dict(models="regnetx_200mf,regnetx_800mf,regnetx_1.6gf,regnety_4.0gf,regnetx_8.0gf",
                 efficientnets="b0,b1,b2,b3,b4,b5", headline=True, compile=True, repeats=7, warmup=2,
                 batch=8, train_batch=4, memory_batch=4),
}
GPU_BATCHES = dict(batch=256, train_batch=128, memory_batch=64)  # the full preset on CUDA


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deploy_speed.py", description="Images/s of zoo models vs timm and "
                                "torchvision (same architecture) and EfficientNets, FLOP/s vs the measured peak, "
                                "training activation memory. Explicit options override the preset.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="full")
    p.add_argument("--models", help="comma-separated zoo names")
    p.add_argument("--efficientnets", help="comma-separated EfficientNet variants (b0..b7) or 'none'; each is timed "
                   "side by side with its flops-matched RegNets of the paper's Table 4 at its native resolution")
    p.add_argument("--headline", action=argparse.BooleanOptionalAction, default=None,
                   help="RegNetX-8.0GF @224 vs EfficientNet-B5 @456 (the paper's claim; timed with the B5 pair)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile of the fused channels_last model")
    p.add_argument("--torchvision", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch", type=int, help="inference batch (CPU full preset 8, GPU 256)")
    p.add_argument("--train-batch", type=int)
    p.add_argument("--memory-batch", type=int)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:i]")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--warmup", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--modes", default="infer,train,memory", help="subset of infer,train,memory")
    p.add_argument("--layouts", default="nchw,nhwc", help="subset of nchw,nhwc")
    p.add_argument("--no-peak", action="store_true", help="skip measuring the machine's peak FLOP/s")
    p.add_argument("--no-peak-memory", action="store_true",
                   help="memory: only count the bytes saved for backward, skip measuring the step's peak "
                        "(CPU: a fresh subprocess per model)")
    p.add_argument("--details", action="store_true", help="also print every timed row and every ratio")
    p.add_argument("--json", default=None, help="write the full report here (full preset, neither --json nor "
                   "--plot: results/deploy-DEVICE.json)")
    p.add_argument("--plot", default=None, help="write a figure here, .png/.pdf/.svg (full preset, neither --json "
                   "nor --plot: results/deploy-DEVICE.png)")
    return p


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip().lower() != "none")


def resolve_device(device: str) -> str:
    """The device kind ``--device`` means: "cuda" for cuda[:i] (and auto with CUDA present), else "cpu"."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def parse_args(argv: list[str], results: Path = RESULTS) -> tuple[argparse.Namespace, BenchConfig]:
    """The options and the ``BenchConfig`` they ask for; bad options exit through argparse (status 2)."""
    p = parser()
    a = p.parse_args(argv)
    try:
        device = resolve_device(a.device)
    except RuntimeError as err:
        p.error(f"bad --device {a.device!r}: {err}")
    preset = dict(PRESETS[a.preset])
    if a.preset == "full":
        preset.update(GPU_BATCHES if device == "cuda" else {})
        if a.json is None and a.plot is None:  # the committed results of this device
            a.json, a.plot = str(results / f"deploy-{device}.json"), str(results / f"deploy-{device}.png")
    pick = {k: getattr(a, k) if getattr(a, k) is not None else preset[k] for k in
            ("models", "efficientnets", "headline", "compile", "repeats", "warmup", "batch", "train_batch",
             "memory_batch")}
    modes = set(_split(a.modes))
    if not modes or modes - {"infer", "train", "memory"}:
        p.error(f"--modes must be a subset of infer,train,memory, got {a.modes!r}")
    try:
        cfg = BenchConfig(models=_split(pick["models"]), efficientnets=_split(pick["efficientnets"]),
                          headline=pick["headline"], torchvision=a.torchvision, batch=pick["batch"],
                          train_batch=pick["train_batch"], memory_batch=pick["memory_batch"], device=a.device,
                          amp=a.amp, threads=a.threads, warmup=pick["warmup"], repeats=pick["repeats"],
                          iters=a.iters, infer="infer" in modes, train="train" in modes, memory="memory" in modes,
                          peak_memory=not a.no_peak_memory, layouts=_split(a.layouts), compile=pick["compile"],
                          peak=not a.no_peak)
    except (UnknownModelError, ValueError) as err:
        p.error(str(err))
    return a, cfg


def main(argv: list[str], results: Path = RESULTS) -> int:
    a, cfg = parse_args(argv, results)
    report = run_benchmark(cfg, log=lambda s: print(s, flush=True))
    print(summary(report, details=a.details))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(a.json, json.dumps(asdict(report), indent=1))
        print(f"wrote {a.json}")
    if a.plot:
        from harness.plot import plot_report  # matplotlib

        Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_report(report, a.plot)
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
