"""``regnet-zoo export`` (ONNX / TorchScript / OpenVINO, fp32 or int8, verified), ``regnet-zoo quantize`` (the
int8 artefact) and ``regnet-zoo benchmark`` (inference speed vs timm, fp32 / bf16 / int8).

``benchmark`` is the package's thin comparison (``regnet_zoo.inference.speed``); the full protocol
(EfficientNet pairs, torchvision, training steps, memory, peak FLOP/s, plots) is the repository's
``benchmarks/deploy_speed.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

from regnet_zoo.cli import positive_int
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
        description="Quantize a zoo model to int8 (BN folded, per-channel int8 weights, 8-bit activations "
                    "calibrated on --num-images images) and write a folder: model.xml + model.bin (OpenVINO IR) "
                    "and quantization.json (architecture, preprocessing, calibration, versions, the check against "
                    "fp32, sha256 of the files). Load it with regnet_zoo.inference.load_quantized(DIR). The folder "
                    "appears only when complete. Needs pip install 'regnet-zoo[quant]'.")
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


def _create(a: argparse.Namespace, command: str):
    """The model of ``a`` (eval mode), or None after printing the error (bad name, weights)."""
    from regnet_zoo.factory import create
    from regnet_zoo.registry import UnknownModelError
    from regnet_zoo.weights import WeightsError

    try:
        return create(a.name, pretrained=a.weights or a.pretrained, num_classes=a.num_classes, in_chans=a.in_chans,
                      cache_dir=a.cache_dir).eval()
    except (UnknownModelError, WeightsError, FileNotFoundError) as err:
        print(f"regnet-zoo {command}: {err}", file=sys.stderr)
        return None


def _calibration(a: argparse.Namespace, model, command: str):
    """The calibration batches of ``--calib`` (``CalibrationError`` printed, None returned when bad)."""
    from regnet_zoo.inference import CalibrationError, calibration_batches

    try:
        return calibration_batches(a.calib, model, num_images=a.num_images)
    except CalibrationError as err:
        print(f"regnet-zoo {command}: {err}; pass --calib DIR (a folder of readable images) or --calib digits",
              file=sys.stderr)
        return None


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


def _describe_check(check: dict[str, float]) -> str:
    return (f"vs fp32 on {check['images']} calibration images: top-1 agreement {check['top1_agreement']:.3f}, "
            f"max rel. logit error {check['max_rel_error']:.3f}")


def run_quantize(a: argparse.Namespace) -> int:
    from regnet_zoo.inference import (
        ExportError,
        QuantizationDependencyError,
        QuantizationError,
        quantize_model,
        save_quantized,
    )
    from regnet_zoo.inference.quantize import METADATA_FILE

    out = Path(a.out)
    if (out / METADATA_FILE).exists() and not a.overwrite:
        print(f"regnet-zoo quantize: {out} already holds a quantized model; pass --overwrite or another --out",
              file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"regnet-zoo quantize: --out {out} exists and is not a folder", file=sys.stderr)
        return 2
    if (model := _create(a, "quantize")) is None or (batches := _calibration(a, model, "quantize")) is None:
        return 2
    try:
        qmodel = quantize_model(model, batches, num_images=a.num_images, preset=a.preset, calibration_name=a.calib)
        check = _int8_check(model, qmodel, batches[:4], rtol=float("inf"), what=a.name)
        save_quantized(qmodel, out, {"check": check, "source": {"name": a.name, "weights": a.weights or a.pretrained}},
                       overwrite=a.overwrite)
    except QuantizationDependencyError as err:
        print(f"regnet-zoo quantize: {err}", file=sys.stderr)
        return 3
    except (QuantizationError, ExportError, OSError) as err:  # OSError: writing --out (nothing is left there)
        print(f"regnet-zoo quantize {a.name}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}/ (int8 OpenVINO IR + {METADATA_FILE}; {_describe_check(check)}); load it with "
          f"regnet_zoo.inference.load_quantized({str(out)!r})")
    return 0


def _export_int8(a: argparse.Namespace, model, out: Path) -> int:
    """``export --int8``: ONNX Runtime QDQ file or the OpenVINO + NNCF artefact folder, checked against fp32."""
    from regnet_zoo.inference import (
        ExportError,
        QuantizationDependencyError,
        QuantizationError,
        export_onnx,
        fuse_bn,
        quantize_model,
        save_quantized,
    )
    from regnet_zoo.inference.export import DEFAULT_OPSET, quantize_onnx

    if a.calib is None:
        print("regnet-zoo export: --int8 needs calibration images: --calib DIR|digits", file=sys.stderr)
        return 2
    if (batches := _calibration(a, model, "export")) is None:
        return 2
    check_batches = batches[:4]
    try:
        if a.format == "openvino":
            qmodel = quantize_model(model, batches, num_images=a.num_images, calibration_name=a.calib)
            check = None if a.no_check else _int8_check(model, qmodel, check_batches, a.int8_rtol, a.name)
            save_quantized(qmodel, out, {"check": check} if check else None)
        else:
            with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
                fp32 = export_onnx(fuse_bn(model), Path(tmp) / "fp32.onnx", batches[0][:2], opset=a.opset or
                                   DEFAULT_OPSET)
                quantize_onnx(fp32, Path(tmp) / out.name, batches)
                check = None if a.no_check else _int8_check(model, _ort_model(Path(tmp) / out.name), check_batches,
                                                            a.int8_rtol, f"{out.name} (ONNX Runtime)")
                os.replace(Path(tmp) / out.name, out)
    except QuantizationDependencyError as err:
        print(f"regnet-zoo export: {err}", file=sys.stderr)
        return 3
    except (QuantizationError, ExportError, FileExistsError) as err:
        print(f"regnet-zoo export {a.name}: {err}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.iterdir()) if out.is_dir() else out.stat().st_size
    print(f"wrote {out} ({a.format} int8, {size / 2**20:.1f} MiB; "
          f"{_describe_check(check) if check else 'not checked'})")
    return 0


def _ort_model(path: Path):
    """An ONNX file as a function: float32 NCHW tensor -> logits tensor (ONNX Runtime, CPU)."""
    import onnxruntime as ort
    import torch

    from regnet_zoo.inference.export import ONNX_INPUT

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {ONNX_INPUT: x.float().cpu().numpy()})[0])


def run_export(a: argparse.Namespace) -> int:
    import torch

    from regnet_zoo.inference import ExportError, check_onnx, export_onnx, fuse_bn, to_torchscript
    from regnet_zoo.inference.export import DEFAULT_OPSET, check_openvino, export_openvino

    if a.calib is not None and not a.int8:
        print("regnet-zoo export: --calib applies to --int8 only", file=sys.stderr)
        return 2
    if a.int8 and a.format not in INT8_FORMATS:
        print(f"regnet-zoo export: --int8 applies to --format {' / '.join(INT8_FORMATS)}, not {a.format}",
              file=sys.stderr)
        return 2
    if (model := _create(a, "export")) is None:
        return 2
    exported = fuse_bn(model) if a.fuse_bn else model
    base = a.name.replace("/", "_").replace(":", "_") + ("-fused" if a.fuse_bn else "") + ("-int8" if a.int8 else "")
    int8_dir = a.int8 and a.format == "openvino"
    out = Path(a.output or base + ("" if int8_dir else FORMATS[a.format]))
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.int8:
        return _export_int8(a, model, out)
    torch.manual_seed(0)
    example = torch.randn(1 if a.static_batch else 2, a.in_chans, a.resolution, a.resolution)
    checks = [torch.randn(n, a.in_chans, a.resolution, a.resolution) for n in ((1,) if a.static_batch else (1, 3))]
    try:
        if a.format == "onnx":
            export_onnx(exported, out, example, opset=a.opset or DEFAULT_OPSET, dynamic_batch=not a.static_batch)
            diff = None if a.no_check else check_onnx(out, model, checks, atol=a.atol)
        elif a.format == "openvino":
            export_openvino(exported, out, example)
            diff = None if a.no_check else check_openvino(out, model, checks, atol=a.atol)
        else:
            to_torchscript(exported, example, out, method=a.torchscript_method)
            diff = None if a.no_check else _check_torchscript(out, model, checks, a.atol)
    except ExportError as err:  # incl. ExportDependencyError: names the packages and `pip install regnet-zoo[export]`
        unchecked = f" (wrote {out} unchecked; --no-check skips the check)" if out.exists() else ""
        print(f"regnet-zoo export {a.name}: {err}{unchecked}", file=sys.stderr)
        return 1
    what = f"checked at batch {', '.join(str(len(x)) for x in checks)}: max abs diff {diff:.2e}" if diff is not None \
        else "not checked"
    size = os.path.getsize(out) + (os.path.getsize(out.with_suffix(".bin")) if a.format == "openvino" else 0)
    print(f"wrote {out} ({a.format}{', BN fused' if a.fuse_bn else ''}, {size / 2**20:.1f} MiB; "
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
        print(f"regnet-zoo benchmark: {err}", file=sys.stderr)
        return 3 if isinstance(err, QuantizationDependencyError) else 2
    results = []
    for name in names:
        try:
            variants = default_variants(a.compile, a.dtype, a.resolution)
            results.append(compare(name, batch=a.batch, layouts=a.layouts, variants=variants,
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
