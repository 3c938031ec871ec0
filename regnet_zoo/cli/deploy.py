"""``regnet-zoo export`` (ONNX / TorchScript / OpenVINO, fp32 or int8, verified), ``quantize`` (the int8
artefact) and ``benchmark`` (``regnet_zoo.inference.speed``: inference speed vs timm, fp32 / bf16 / int8).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from regnet_zoo.cli import fail, positive_int
from regnet_zoo.fileio import atomic_write

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "openvino": ".xml"}
INT8_FORMATS = ("onnx", "openvino")  # --int8: ONNX Runtime quantize_static (QDQ) / the OpenVINO + NNCF artefact
DTYPES = ("fp32", "bf16", "int8")


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pretrained", nargs="?", const=True, default=False,
                     help="load the default pretrained weights, or the weights of tag TAG")
    src.add_argument("--weights", default=None, help="load a local .safetensors/.pth weight file")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 1000)")
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")


def _add_calibration(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--calib", required=required, metavar="DIR|digits",
                   help="calibration images: an image folder (recursive; e.g. ImageNet train/) preprocessed with the "
                        "model's eval transform, or 'digits' (the demo data)")
    p.add_argument("--num-images", type=positive_int, default=300, help="calibration images (default 300)")


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export to ONNX / TorchScript, checked against PyTorch",
                              description="Export a zoo model to ONNX or TorchScript and check it against PyTorch "
                                          "(onnxruntime for ONNX) at batch sizes 1 and 3.")
    p.add_argument("name", help="model name or alias (e.g. regnety_1.6gf, RegNetX-8.0GF), optionally NAME.TAG")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx",
                   help="onnx (default), torchscript, or openvino (IR: NAME.xml + NAME.bin)")
    p.add_argument("--output", "-o", default=None,
                   help="output file (default: NAME[-fused][-int8].onnx / .pt / .xml; openvino --int8: a folder)")
    p.add_argument("--int8", action="store_true",
                   help="int8 static quantization (needs --calib): onnx by ONNX Runtime quantize_static (QDQ, "
                        "per-channel weights); openvino by NNCF (the `regnet-zoo quantize` artefact folder)")
    _add_calibration(p, required=False)
    p.add_argument("--fuse-bn", action="store_true", help="fold BatchNorm into the convolutions first")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18)")
    p.add_argument("--resolution", type=int, default=224, help="example input size in pixels (default 224)")
    p.add_argument("--static-batch", action="store_true", help="ONNX: fixed batch size 1 instead of dynamic")
    p.add_argument("--torchscript-method", choices=("script", "trace"), default="script",
                   help="TorchScript: compile the code (default) or trace one example")
    _add_source(p)
    p.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed in the fp32 check")
    p.add_argument("--int8-rtol", type=float, default=0.25,
                   help="int8 check: max |logit error| / max |fp32 logit| allowed on the calibration images")
    p.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")
    p.set_defaults(handler=run_export)

    p = subparsers.add_parser(
        "quantize", help="int8 post-training quantization (OpenVINO + NNCF) to a loadable folder",
        description="Quantize a zoo model to int8 (calibrated on --num-images images) into a folder: model.xml + "
                    "model.bin (OpenVINO IR) and quantization.json (preprocessing, calibration, the check against "
                    "fp32, sha256 of the files), complete or absent. Load it with "
                    "regnet_zoo.inference.load_quantized(DIR). Needs pip install 'regnet-zoo[quant]'.")
    p.add_argument("name", help="model name or alias, optionally NAME.TAG")
    _add_calibration(p, required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="the artefact folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing artefact in --out")
    p.add_argument("--preset", choices=("performance", "mixed"), default="performance",
                   help="symmetric (performance, default) or asymmetric (mixed) activations")
    _add_source(p)
    p.set_defaults(handler=run_quantize)

    p = subparsers.add_parser(
        "benchmark", help="images/s of zoo models, eager and optimised, vs timm",
        description="Inference images/s of each zoo model (random init), eager, BN-folded (and compiled with "
                    "--compile), and of timm's same architecture with the same weights, in each layout, timed "
                    "interleaved; ratios are to timm's eager model in the first layout (benchmarks/deploy_speed.py).")
    p.add_argument("names", nargs="+", metavar="NAME", help="zoo model names or aliases (e.g. regnetx_200mf)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per call (default 8)")
    p.add_argument("--resolution", type=positive_int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--layouts", type=_split, default=("nchw", "nhwc"),
                   help="comma-separated input layouts: nchw, nhwc (channels_last); default both")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the BN-folded model")
    p.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="fp32 (default); bf16: + timm under bf16 autocast and our bf16 model; int8: + our OpenVINO "
                        "int8 model (calibrated on random images: speed only). Ratios stay to timm fp32 eager")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--warmup", type=positive_int, default=1, help="untimed calls per case first (default 1)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed interleaved rounds (default 5)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results here (JSON)")
    p.set_defaults(handler=run_benchmark)


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip().lower() for v in value.split(",") if v.strip()))


class _BadInput(Exception):
    """Bad input (exit 2): an unknown name, unreadable weights, unusable calibration images."""


def _fail(a: argparse.Namespace, err: Exception, note: str = "") -> int:
    """Print ``err`` (+ ``note``); exit 2 for bad input, 3 without OpenVINO / NNCF, else 1 (naming the model)."""
    from regnet_zoo.inference import QuantizationDependencyError

    code = 2 if isinstance(err, (_BadInput, FileExistsError, NotADirectoryError)) else \
        3 if isinstance(err, QuantizationDependencyError) else 1
    return fail(f"{a.command} {a.name}" if code == 1 else a.command, f"{err}{note}", code)


def _prepare(a: argparse.Namespace, calibrate: bool):
    """(the model of ``a`` in eval mode, the ``--calib`` batches if ``calibrate``); ``_BadInput`` when bad."""
    from regnet_zoo.factory import create
    from regnet_zoo.inference import CalibrationError, calibration_batches
    from regnet_zoo.registry import UnknownModelError
    from regnet_zoo.weights import WeightsError

    try:
        model = create(a.name, pretrained=a.weights or a.pretrained, num_classes=a.num_classes, in_chans=a.in_chans,
                       cache_dir=a.cache_dir).eval()
    except (UnknownModelError, WeightsError, FileNotFoundError) as err:
        raise _BadInput(err) from err
    try:
        return model, calibration_batches(a.calib, model, num_images=a.num_images) if calibrate else None
    except CalibrationError as err:
        raise _BadInput(f"{err}; pass --calib DIR (a folder of readable images) or --calib digits") from err


def _int8_check(reference, candidate, batches: list, rtol: float, what: str) -> dict[str, float]:
    """``compare_outputs`` on ``batches``; ``ExportError`` when the relative logit error exceeds ``rtol``."""
    from regnet_zoo.inference import ExportError
    from regnet_zoo.inference.compare import compare_outputs

    check = compare_outputs(reference, candidate, batches)
    if check["max_rel_error"] > rtol:
        raise ExportError(f"{what} differs from fp32 by {check['max_rel_error']:.3g} of the largest logit "
                          f"(> --int8-rtol {rtol:g}; top-1 agreement {check['top1_agreement']:.3f}): calibrate on "
                          "more or more representative images (--calib, --num-images)")
    return check


def _describe_check(check: dict[str, float] | None) -> str:
    return (f"vs fp32 on {check['images']} calibration images: top-1 agreement {check['top1_agreement']:.3f}, "
            f"max rel. logit error {check['max_rel_error']:.3f}") if check else "not checked"


def _quantize(a: argparse.Namespace, model, batches: list, out: Path, rtol: float | None, preset: str = "performance",
              overwrite: bool = False, **metadata) -> dict[str, float] | None:
    """The OpenVINO + NNCF artefact of ``model`` in ``out``, checked against fp32 (not with ``rtol=None``)."""
    from regnet_zoo.inference import quantize_model, save_quantized

    qmodel = quantize_model(model, batches, num_images=a.num_images, preset=preset, calibration_name=a.calib)
    check = None if rtol is None else _int8_check(model, qmodel, batches[:4], rtol, a.name)
    save_quantized(qmodel, out, {**metadata, **({"check": check} if check else {})}, overwrite=overwrite)
    return check


def run_quantize(a: argparse.Namespace) -> int:
    from regnet_zoo.inference import ExportError, QuantizationError
    from regnet_zoo.inference.quantize import METADATA_FILE, check_out_dir

    out = Path(a.out)
    try:
        check_out_dir(out, a.overwrite)
        model, batches = _prepare(a, calibrate=True)
        check = _quantize(a, model, batches, out, float("inf"), a.preset, a.overwrite,
                          source={"name": a.name, "weights": a.weights or a.pretrained})
    except (_BadInput, QuantizationError, ExportError, OSError) as err:  # OSError: writing --out (nothing is left)
        return _fail(a, err)
    print(f"wrote {out}/ (int8 OpenVINO IR + {METADATA_FILE}; {_describe_check(check)}); load it with "
          f"regnet_zoo.inference.load_quantized({str(out)!r})")
    return 0


def _export_int8(a: argparse.Namespace, model, batches: list, out: Path) -> dict[str, float] | None:
    """``export --int8``: the OpenVINO + NNCF artefact folder or an ONNX Runtime QDQ file, checked against fp32
    before it is written."""
    from regnet_zoo.inference import export_onnx, fuse_bn
    from regnet_zoo.inference.export import DEFAULT_OPSET, onnx_runner, quantize_onnx

    rtol = None if a.no_check else a.int8_rtol
    if a.format == "openvino":
        return _quantize(a, model, batches, out, rtol)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        fp32 = export_onnx(fuse_bn(model), Path(tmp) / "fp32.onnx", batches[0][:2], opset=a.opset or DEFAULT_OPSET)
        int8 = quantize_onnx(fp32, Path(tmp) / out.name, batches)
        check = None if rtol is None else _int8_check(model, onnx_runner(int8), batches[:4], rtol,
                                                      f"{out.name} (ONNX Runtime)")
        os.replace(int8, out)
    return check


def run_export(a: argparse.Namespace) -> int:
    import torch

    from regnet_zoo.inference import ExportError, QuantizationError, check_onnx, export_onnx, fuse_bn, to_torchscript
    from regnet_zoo.inference.export import DEFAULT_OPSET, check_openvino, check_torchscript, export_openvino

    if a.calib is not None and not a.int8:
        return fail("export", "--calib applies to --int8 only", 2)
    if a.int8 and a.format not in INT8_FORMATS:
        return fail("export", f"--int8 applies to --format {' / '.join(INT8_FORMATS)}, not {a.format}", 2)
    if a.int8 and a.calib is None:
        return fail("export", "--int8 needs calibration images: --calib DIR|digits", 2)
    base = a.name.replace("/", "_").replace(":", "_") + ("-fused" if a.fuse_bn else "") + ("-int8" if a.int8 else "")
    out = Path(a.output or base + ("" if a.int8 and a.format == "openvino" else FORMATS[a.format]))
    torch.manual_seed(0)
    example = torch.randn(1 if a.static_batch else 2, a.in_chans, a.resolution, a.resolution)
    checks = [torch.randn(n, a.in_chans, a.resolution, a.resolution) for n in ((1,) if a.static_batch else (1, 3))]
    wrote = False
    try:
        model, batches = _prepare(a, calibrate=a.int8)
        out.parent.mkdir(parents=True, exist_ok=True)
        if a.int8:
            kind, what = f"{a.format} int8", _describe_check(_export_int8(a, model, batches, out))
        else:
            exported = fuse_bn(model) if a.fuse_bn else model
            if a.format == "onnx":
                export_onnx(exported, out, example, opset=a.opset or DEFAULT_OPSET, dynamic_batch=not a.static_batch)
            elif a.format == "openvino":
                export_openvino(exported, out, example)
            else:
                to_torchscript(exported, example, out, method=a.torchscript_method)
            wrote = True
            check = {"onnx": check_onnx, "openvino": check_openvino, "torchscript": check_torchscript}[a.format]
            diff = None if a.no_check else check(out, model, checks, atol=a.atol)
            kind = a.format + (", BN fused" if a.fuse_bn else "")
            what = "not checked" if diff is None else \
                f"checked at batch {', '.join(str(len(x)) for x in checks)}: max abs diff {diff:.2e}"
    except (_BadInput, QuantizationError, ExportError, OSError) as err:  # ExportError: names the missing packages
        return _fail(a, err, f" (wrote {out} unchecked; --no-check skips the check)" if wrote else "")
    files = out.iterdir() if out.is_dir() else [out, *([out.with_suffix(".bin")] if out.suffix == ".xml" else [])]
    print(f"wrote {out} ({kind}, {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB; {what})")
    return 0


def run_benchmark(a: argparse.Namespace) -> int:
    import torch

    from regnet_zoo.inference import QuantizationDependencyError, require_bf16
    from regnet_zoo.inference.quantize import require_quant
    from regnet_zoo.inference.speed import compare, default_variants, format_comparison
    from regnet_zoo.registry import UnknownModelError, get_entry

    try:
        names = [get_entry(n).name for n in a.names]  # all names checked before the first (long) run
        device = torch.device(a.device)
        if a.dtype != "fp32" and device.type != "cpu":
            raise ValueError(f"--dtype {a.dtype} times the CPU paths (oneDNN bf16, OpenVINO int8); on {device} "
                             "use --dtype fp32 (bf16 autocast on GPU: benchmarks/gpu_check.sh)")
        if a.dtype == "bf16":
            require_bf16()
        if a.dtype == "int8":
            require_quant("openvino", "nncf")
    except (UnknownModelError, RuntimeError, ValueError) as err:  # incl. BF16UnsupportedError
        return fail("benchmark", err, 3 if isinstance(err, QuantizationDependencyError) else 2)
    results = []
    for name in names:
        try:
            results.append(compare(name, batch=a.batch, layouts=a.layouts, resolution=a.resolution,
                                   variants=default_variants(a.compile, a.dtype, a.resolution), threads=a.threads,
                                   device=device, warmup=a.warmup, repeats=a.repeats))
        except ValueError as err:  # e.g. an unknown layout
            return fail("benchmark", err, 2)
        print(format_comparison(results[-1]), flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(a.json, json.dumps(results, indent=1))
        print(f"wrote {a.json}")
    return 0
