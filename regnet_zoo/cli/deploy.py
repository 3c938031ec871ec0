"""``regnet-zoo export`` (ONNX / TorchScript, verified) and ``regnet-zoo benchmark`` (speed and memory)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from regnet_zoo.fileio import atomic_write

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
# presets of `regnet-zoo benchmark`; explicit options override them
PRESETS: dict[str, dict[str, object]] = {
    "quick": dict(models="regnetx_200mf", efficientnets="b0", headline=False, compile=False, repeats=3, warmup=1,
                  batch=4, train_batch=4, memory_batch=4),
    # CPU, 2 threads, quiet machine: about 30 minutes, < 10 GB RAM (B5 @456 keeps ~1.3 GB per image for backward)
    "full": dict(models="regnetx_200mf,regnetx_800mf,regnetx_1.6gf,regnety_4.0gf,regnetx_8.0gf",
                 efficientnets="b0,b1,b2,b3,b4,b5", headline=True, compile=True, repeats=7, warmup=2,
                 batch=8, train_batch=4, memory_batch=4),
}
GPU_BATCHES = dict(batch=256, train_batch=128, memory_batch=64)  # PERF.md's GPU protocol


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="regnet-zoo export", description="Export a zoo model to ONNX or TorchScript "
                                "and check it against PyTorch (onnxruntime for ONNX) at batch sizes 1 and 3.")
    p.add_argument("name", help="model name or alias (e.g. regnety_1.6gf, RegNetX-8.0GF), optionally NAME.TAG")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    p.add_argument("--output", "-o", default=None, help="output file (default: NAME[-fused].onnx / .pt)")
    p.add_argument("--fuse-bn", action="store_true", help="fold BatchNorm into the convolutions first")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18)")
    p.add_argument("--resolution", type=int, default=224, help="example input size in pixels (default 224)")
    p.add_argument("--static-batch", action="store_true", help="ONNX: fixed batch size 1 instead of dynamic")
    p.add_argument("--torchscript-method", choices=("script", "trace"), default="script",
                   help="TorchScript: compile the code (default) or trace one example")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", nargs="?", const=True, default=False,
                     help="load the default pretrained weights, or the weights of tag TAG")
    src.add_argument("--weights", default=None, help="load a local .safetensors/.pth weight file")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 1000)")
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed in the check")
    p.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")
    return p


def export_main(argv: list[str]) -> int:
    a = _export_parser().parse_args(argv)
    import torch

    from regnet_zoo.factory import create
    from regnet_zoo.inference import ExportError, check_onnx, export_onnx, fuse_bn, to_torchscript
    from regnet_zoo.inference.export import DEFAULT_OPSET
    from regnet_zoo.registry import UnknownModelError
    from regnet_zoo.weights import WeightsError

    try:
        model = create(a.name, pretrained=a.weights or a.pretrained, num_classes=a.num_classes,
                       in_chans=a.in_chans, cache_dir=a.cache_dir).eval()
    except (UnknownModelError, WeightsError, FileNotFoundError) as err:
        print(f"regnet-zoo export: {err}", file=sys.stderr)
        return 2
    exported = fuse_bn(model) if a.fuse_bn else model
    base = a.name.replace("/", "_").replace(":", "_") + ("-fused" if a.fuse_bn else "")
    out = Path(a.output or base + FORMATS[a.format])
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    example = torch.randn(1 if a.static_batch else 2, a.in_chans, a.resolution, a.resolution)
    checks = [torch.randn(n, a.in_chans, a.resolution, a.resolution) for n in ((1,) if a.static_batch else (1, 3))]
    try:
        if a.format == "onnx":
            export_onnx(exported, out, example, opset=a.opset or DEFAULT_OPSET, dynamic_batch=not a.static_batch)
            diff = None if a.no_check else check_onnx(out, model, checks, atol=a.atol)
        else:
            to_torchscript(exported, example, out, method=a.torchscript_method)
            diff = None if a.no_check else _check_torchscript(out, model, checks, a.atol)
    except ExportError as err:  # incl. ExportDependencyError: names the packages and `pip install regnet-zoo[export]`
        unchecked = f" (wrote {out} unchecked; --no-check skips the check)" if out.exists() else ""
        print(f"regnet-zoo export {a.name}: {err}{unchecked}", file=sys.stderr)
        return 1
    what = f"checked at batch {', '.join(str(len(x)) for x in checks)}: max abs diff {diff:.2e}" if diff is not None \
        else "not checked"
    print(f"wrote {out} ({a.format}{', BN fused' if a.fuse_bn else ''}, {os.path.getsize(out) / 2**20:.1f} MiB; "
          f"{what})")
    return 0


def _check_torchscript(path: Path, model, inputs, atol: float) -> float:
    import torch

    from regnet_zoo.inference import ExportError

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        loaded = torch.jit.load(str(path))
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            diff = float((loaded(x) - model(x)).abs().max())
            worst = max(worst, diff)
            if diff > atol:
                raise ExportError(f"{path}: TorchScript differs from PyTorch by {diff:.3g} > {atol:g} "
                                  f"for input {tuple(x.shape)}")
    return worst


def _benchmark_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="regnet-zoo benchmark", description="Images/s of zoo models vs timm and "
                                "torchvision (same architecture) and EfficientNets, FLOP/s vs the measured peak, "
                                "training activation memory. Explicit options override the preset.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    p.add_argument("--models", help="comma-separated zoo names")
    p.add_argument("--efficientnets", help="comma-separated EfficientNet variants (b0..b7) or 'none'; each is timed "
                   "side by side with its flops-matched RegNets of the paper's Table 4 at its native resolution")
    p.add_argument("--headline", action=argparse.BooleanOptionalAction, default=None,
                   help="RegNetX-8.0GF @224 vs EfficientNet-B5 @456 (the paper's claim; timed with the B5 pair)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile of the fused channels_last model")
    p.add_argument("--torchvision", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--batch", type=int, help="inference batch (CPU preset 8, GPU 256)")
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
    p.add_argument("--json", default=None, help="write the full report here")
    p.add_argument("--plot", default=None, help="write a figure here (.png/.pdf/.svg)")
    return p


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip().lower() != "none")


def resolve_device(device: str) -> str:
    """The device kind ``--device`` means: "cuda" for cuda[:i] (and auto with CUDA present), else "cpu"."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def benchmark_device(argv: list[str]) -> str:
    """The device kind ("cpu" / "cuda") ``regnet-zoo benchmark argv`` runs on (other options are ignored)."""
    known, _ = _benchmark_parser().parse_known_args(argv)
    return resolve_device(known.device)


def benchmark_main(argv: list[str]) -> int:
    a = _benchmark_parser().parse_args(argv)
    from regnet_zoo.benchmark import BenchConfig, run_benchmark, summary
    from regnet_zoo.registry import UnknownModelError

    preset = dict(PRESETS[a.preset])
    try:
        cuda = resolve_device(a.device) == "cuda"
    except RuntimeError as err:
        print(f"regnet-zoo benchmark: bad --device {a.device!r}: {err}", file=sys.stderr)
        return 2
    if cuda and a.preset == "full":
        preset.update(GPU_BATCHES)
    pick = {k: getattr(a, k) if getattr(a, k) is not None else preset[k] for k in
            ("models", "efficientnets", "headline", "compile", "repeats", "warmup", "batch", "train_batch",
             "memory_batch")}
    modes = set(_split(a.modes))
    if not modes or modes - {"infer", "train", "memory"}:
        print(f"regnet-zoo benchmark: --modes must be a subset of infer,train,memory, got {a.modes!r}",
              file=sys.stderr)
        return 2
    try:
        cfg = BenchConfig(models=_split(pick["models"]), efficientnets=_split(pick["efficientnets"]),
                          headline=pick["headline"], torchvision=a.torchvision, batch=pick["batch"],
                          train_batch=pick["train_batch"], memory_batch=pick["memory_batch"], device=a.device,
                          amp=a.amp, threads=a.threads, warmup=pick["warmup"], repeats=pick["repeats"],
                          iters=a.iters, infer="infer" in modes, train="train" in modes, memory="memory" in modes,
                          peak_memory=not a.no_peak_memory, layouts=_split(a.layouts), compile=pick["compile"],
                          peak=not a.no_peak)
    except (UnknownModelError, ValueError) as err:
        print(f"regnet-zoo benchmark: {err}", file=sys.stderr)
        return 2
    report = run_benchmark(cfg, log=lambda s: print(s, flush=True))
    print(summary(report, details=a.details))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(a.json, json.dumps(asdict(report), indent=1))
        print(f"wrote {a.json}")
    if a.plot:
        from regnet_zoo.benchmark.plot import plot_report

        Path(a.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_report(report, a.plot)
        print(f"wrote {a.plot}")
    return 0


def main(command: str, argv: list[str]) -> int:
    return export_main(argv) if command == "export" else benchmark_main(argv)
