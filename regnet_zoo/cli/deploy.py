"""``regnet-zoo export`` (ONNX / TorchScript, verified) and ``regnet-zoo benchmark`` (inference speed vs timm).

``benchmark`` is the package's thin comparison (``regnet_zoo.inference.speed``); the full protocol
(EfficientNet pairs, torchvision, training steps, memory, peak FLOP/s, plots) is the repository's
``benchmarks/deploy_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from regnet_zoo.cli import positive_int
from regnet_zoo.fileio import atomic_write

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export to ONNX / TorchScript, checked against PyTorch",
                              description="Export a zoo model to ONNX or TorchScript and check it against PyTorch "
                                          "(onnxruntime for ONNX) at batch sizes 1 and 3.")
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
    p.set_defaults(handler=run_export)

    p = subparsers.add_parser(
        "benchmark", help="images/s of zoo models, eager and optimised, vs timm",
        description="Inference images/s of each zoo model (random init): our eager model, timm's implementation "
                    "of the same architecture with the same weights, our BN-folded model (and, with --compile, "
                    "its torch.compile), in each layout, timed interleaved in this process; ratios are to timm's "
                    "eager model in the first layout. The full protocol (EfficientNet pairs, torchvision, training, "
                    "memory) is benchmarks/deploy_speed.py in the repository.")
    p.add_argument("names", nargs="+", metavar="NAME", help="zoo model names or aliases (e.g. regnetx_200mf)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per call (default 8)")
    p.add_argument("--resolution", type=positive_int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--layouts", type=_split, default=("nchw", "nhwc"),
                   help="comma-separated input layouts: nchw, nhwc (channels_last); default both")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the BN-folded model")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--warmup", type=positive_int, default=1, help="untimed calls per case first (default 1)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed interleaved rounds (default 5)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results here (JSON)")
    p.set_defaults(handler=run_benchmark)


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))


def run_export(a: argparse.Namespace) -> int:
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


def run_benchmark(a: argparse.Namespace) -> int:
    import torch

    from regnet_zoo.inference.speed import compare, default_variants, format_comparison
    from regnet_zoo.registry import UnknownModelError, get_entry

    try:
        names = [get_entry(n).name for n in a.names]  # all names checked before the first (long) run
        device = torch.device(a.device)
    except (UnknownModelError, RuntimeError) as err:
        print(f"regnet-zoo benchmark: {err}", file=sys.stderr)
        return 2
    results = []
    for name in names:
        try:
            results.append(compare(name, batch=a.batch, layouts=a.layouts, variants=default_variants(a.compile),
                                   resolution=a.resolution, threads=a.threads, device=device, warmup=a.warmup,
                                   repeats=a.repeats))
        except ValueError as err:  # e.g. an unknown layout
            print(f"regnet-zoo benchmark: {err}", file=sys.stderr)
            return 2
        print(format_comparison(results[-1]), flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(a.json, json.dumps(results, indent=1))
        print(f"wrote {a.json}")
    return 0
