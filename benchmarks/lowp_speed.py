"""Low-precision CPU inference speed, every backend side by side (issue 12, item 3).

Per model (random weights, BN statistics of real images; EfficientNets: timm's, at their native
resolution), each variant is built once and timed interleaved with the others at every batch size:
timm fp32 eager NCHW and channels_last, timm bf16 autocast channels_last (eager and compiled with
weight freezing: timm's best bf16 path); zoo fp32 fused channels_last (eager and compiled), zoo bf16
(eager and compiled); zoo int8 (OpenVINO + NNCF, the library's ``quantize_model``); ONNX Runtime fp32
and int8 (``quantize_static``, QDQ, per-channel); OpenVINO fp32 and bf16; optionally torchao PT2E int8.
EfficientNets get the timm variants only. Compiled variants are timed at ``--compile-batches`` only
(each batch size is a new compilation: minutes per model on 2 cores).

Each row has images/s (median of interleaved rounds), the fastest round, spread, ratios to timm fp32
eager NCHW and to timm's best bf16 path measured in the same rounds, and FLOP/s against the measured
1x1-conv peak of the variant's dtype (``harness.peak``: fp32, bf16, int8; measured before and after the
run, the higher of the two used). The JSON (``--json``,
rewritten after every model) records the CPU flags, versions and ``os.getloadavg()`` per row.

    python benchmarks/lowp_speed.py                  # full: 6 models x batch 1, 8, 32 (33 min, loaded machine)
    python benchmarks/lowp_speed.py --quick          # smoke test: RegNetX-200MF, batch 1, a few variants
    python benchmarks/lowp_speed.py --models regnety_4.0gf --batches 8 --variants timm_eager,zoo_bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # harness/ beside this script

from harness.models import efficientnet, zoo_complexity  # noqa: E402
from harness.peak import measure_int8_peak, measure_peak  # noqa: E402

import regnet_zoo  # noqa: E402
from regnet_zoo.fileio import atomic_write  # noqa: E402
from regnet_zoo.inference import (  # noqa: E402
    cpu_capabilities,
    export_onnx,
    fuse_bn,
    optimize_for_inference,
    quantize_model,
)
from regnet_zoo.inference.speed import Timing  # noqa: E402
from regnet_zoo.registry import get_entry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

Fn = Callable[[torch.Tensor], torch.Tensor]
CL = torch.channels_last


def frozen(model: torch.nn.Module, autocast: bool = False) -> Fn:
    compiled = torch.compile(model)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch._inductor.config.patch(freezing=True), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            return compiled(x.contiguous(memory_format=CL))
    return run


def timm_eager(tm, model, calib):
    return tm


def timm_fp32_cl(tm, model, calib):
    m = copy.deepcopy(tm).to(memory_format=CL)
    return lambda x: m(x.contiguous(memory_format=CL))


def timm_autocast_cl(tm, model, calib):
    m = copy.deepcopy(tm).to(memory_format=CL)

    def run(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return m(x.contiguous(memory_format=CL))
    return run


def timm_autocast_compiled(tm, model, calib):
    return frozen(copy.deepcopy(tm).to(memory_format=CL), autocast=True)


def zoo_fp32_cl(tm, model, calib):
    m = optimize_for_inference(model)
    return lambda x: m(x.contiguous(memory_format=CL))


def zoo_fp32_compiled(tm, model, calib):
    m = optimize_for_inference(model, compile=True)
    return lambda x: m(x.contiguous(memory_format=CL))


def zoo_bf16(tm, model, calib):
    return optimize_for_inference(model, "bf16")


def zoo_bf16_compiled(tm, model, calib):
    return optimize_for_inference(model, "bf16", compile=True)


def _pt2e(model, calib, lowered: bool):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    example = (calib[0],)
    prepared = prepare_pt2e(torch.export.export(fuse_bn(model), example).module(),
                            xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config()))
    for x in calib:
        prepared(x)
    converted = convert_pt2e(prepared)
    return lower_pt2e_quantized_to_x86(converted, example) if lowered else frozen(converted)


def pt2e_int8_compiled(tm, model, calib):
    return _pt2e(model, calib, lowered=False)


def pt2e_int8_lowered(tm, model, calib):
    return _pt2e(model, calib, lowered=True)


def _ort_session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def ort_fp32(tm, model, calib, threads=2):
    path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    export_onnx(fuse_bn(model), path, calib[0][:2])
    return _ort_session(path, threads)


def ort_int8(tm, model, calib, threads=2):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = tempfile.mkdtemp()
    path, pre, out = (os.path.join(folder, n) for n in ("m.onnx", "pre.onnx", "q.onnx"))
    export_onnx(fuse_bn(model), path, calib[0][:2])
    quant_pre_process(path, pre)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x.numpy()} for x in calib])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return _ort_session(out, threads)


def _ov(model, calib, precision: str, threads=2):
    import openvino as ov

    om = ov.convert_model(fuse_bn(model), example_input=calib[0][:1],
                          input=[ov.PartialShape([-1, *calib[0].shape[1:]])])
    request = ov.Core().compile_model(om, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                                  "INFERENCE_NUM_THREADS": threads}).create_infer_request()
    return lambda x: torch.from_numpy(request.infer({0: x.numpy()})[0].copy())


def ov_fp32(tm, model, calib):
    return _ov(model, calib, "f32")


def ov_bf16(tm, model, calib):
    return _ov(model, calib, "bf16")


def ov_int8(tm, model, calib, threads=2):
    return quantize_model(model, torch.cat(calib), num_images=sum(map(len, calib)), threads=threads)


VARIANTS = {f.__name__: f for f in (timm_eager, timm_fp32_cl, timm_autocast_cl, timm_autocast_compiled,
                                    zoo_fp32_cl, zoo_fp32_compiled, zoo_bf16, zoo_bf16_compiled, ov_int8, ort_fp32,
                                    ort_int8, ov_fp32, ov_bf16, pt2e_int8_compiled, pt2e_int8_lowered)}
# the dtype whose peak a variant is measured against
DTYPES = {"timm_autocast_cl": "bf16", "timm_autocast_compiled": "bf16", "zoo_bf16": "bf16",
          "zoo_bf16_compiled": "bf16", "ov_bf16": "bf16", "ov_int8": "int8", "ort_int8": "int8",
          "pt2e_int8_compiled": "int8", "pt2e_int8_lowered": "int8"}
COMPILED = {"timm_autocast_compiled", "zoo_fp32_compiled", "zoo_bf16_compiled", "pt2e_int8_compiled"}
TIMM_ONLY = ("timm_eager", "timm_fp32_cl", "timm_autocast_cl", "timm_autocast_compiled")
DEFAULT_VARIANTS = ("timm_eager", "timm_fp32_cl", "timm_autocast_cl", "timm_autocast_compiled", "zoo_fp32_cl",
                    "zoo_bf16", "zoo_bf16_compiled", "ov_int8", "ort_fp32", "ort_int8", "ov_fp32", "ov_bf16")
DEFAULT_MODELS = ("regnetx_200mf", "regnetx_1.6gf", "regnety_4.0gf", "regnetx_8.0gf", "efficientnet_b0",
                  "efficientnet_b5")
BASELINE, BEST_BF16 = "timm_eager", ("timm_autocast_cl", "timm_autocast_compiled")


def digit_images(n: int, size: int) -> torch.Tensor:
    """``n`` digits images (8x8, upsampled to ``size``) as normalised 3-channel float32 NCHW."""
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    return ((F.interpolate(x, size=size, mode="bilinear").expand(-1, 3, -1, -1) - 0.3) / 0.4).contiguous()


def subject(name: str, images: Callable[[int], torch.Tensor]):
    """(zoo model or None, timm model, resolution, FLOPs per image) of ``name`` (a zoo name or efficientnet_bN)."""
    if name.startswith("efficientnet_"):
        s = efficientnet(name.split("_", 1)[1])
        return None, s.model.eval(), s.resolution, s.flops
    entry = get_entry(name)
    torch.manual_seed(0)
    model = regnet_zoo.create(entry.name).train()
    with torch.no_grad():  # BN statistics of real images (random-init statistics make near-constant logits)
        for chunk in images(224)[:64].split(16):
            model(chunk)
    model.eval()
    tm = timm.create_model(entry.timm_name).eval()
    tm.load_state_dict(model.state_dict())
    return model, tm, 224, 2 * zoo_complexity(entry.name)["flops"]


def time_round_robin(fns: dict[str, Fn], x: torch.Tensor, repeats: int, round_s: float) -> dict[str, Timing]:
    """Median-of-rounds timing, every round running each variant once in a rotating order.

    A variant's round is ``iters`` calls (mean time), ``iters`` chosen so that a round lasts about ``round_s``.
    """
    iters = {}
    for v, fn in fns.items():
        start = time.perf_counter()
        fn(x)
        iters[v] = max(1, round(round_s / (time.perf_counter() - start)))
    times = {v: Timing(v, len(x)) for v in fns}
    names = list(fns)
    for r in range(repeats):
        for v in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(iters[v]):
                fns[v](x)
            times[v].seconds.append((time.perf_counter() - start) / iters[v])
    return times


def run_model(name: str, batches: list[int], variants: list[str], args: argparse.Namespace,
              peaks: dict[str, float]) -> list[dict]:
    """Rows (one per batch and variant) of model ``name``."""
    images = digit_images(64 + max(batches) + args.calib_images, 224)
    cache: dict[int, torch.Tensor] = {}

    def at(size: int) -> torch.Tensor:
        if size not in cache:
            cache[size] = images if size == 224 else digit_images(len(images), size)
        return cache[size]

    model, tm, res, flops = subject(name, at)
    pool = at(res)
    calib = list(pool[:args.calib_images].split(8))
    chosen = [v for v in variants if model is not None or v in TIMM_ONLY]
    ref_model = model if model is not None else tm
    rows, built, build_s = [], {}, {}
    with torch.no_grad():
        for v in [v for v in chosen if v not in COMPILED]:  # built once, timed at every batch size
            start = time.perf_counter()
            try:
                built[v] = VARIANTS[v](tm, model, calib)
            except Exception as err:  # a backend that fails on this model is reported; the others still run
                print(f"{name} {v}: FAILED {type(err).__name__}: {str(err)[:200]}", flush=True)
                continue
            build_s[v] = time.perf_counter() - start
        for batch in batches:
            x = pool[-batch:].clone()
            ref = ref_model(x)
            fns = dict(built)
            if batch in args.compile_batches:
                for v in [v for v in chosen if v in COMPILED]:
                    start = time.perf_counter()
                    try:
                        fns[v] = VARIANTS[v](tm, model, calib)
                        fns[v](x)  # compiles for this batch size
                    except Exception as err:
                        print(f"{name} b{batch} {v}: FAILED {type(err).__name__}: {str(err)[:200]}", flush=True)
                        fns.pop(v, None)
                        continue
                    build_s[v] = time.perf_counter() - start
            errors = {}
            for v, fn in fns.items():
                out = fn(x).float()
                errors[v] = float((out - ref).abs().max() / ref.abs().max())
            big = flops * batch > 2e11  # > ~200 GFLOP per call: fewer rounds
            times = time_round_robin(fns, x, args.repeats_big if big else args.repeats, args.round_s)
            load = os.getloadavg()
            base = times.get(BASELINE)
            best_bf16 = max((times[v] for v in BEST_BF16 if v in times), key=lambda t: t.images_per_s, default=None)
            for v, t in times.items():
                dtype = DTYPES.get(v, "fp32")
                achieved = flops * t.images_per_s
                row = dict(model=name, batch=batch, resolution=res, variant=v, dtype=dtype, img_s=t.images_per_s,
                           best_img_s=t.best_images_per_s, latency_ms=1e3 * t.median_s, spread=t.spread,
                           seconds=t.seconds, build_s=build_s.get(v), rel_logit_error=errors[v],
                           flops_per_image=flops, flop_s=achieved, peak_dtype=dtype,
                           fraction_of_peak=achieved / peaks[dtype] if peaks.get(dtype) else None,
                           x_timm_fp32_eager=t.images_per_s / base.images_per_s if base else None,
                           x_timm_best_bf16=t.images_per_s / best_bf16.images_per_s if best_bf16 else None,
                           timm_best_bf16=best_bf16.name if best_bf16 else None, loadavg=list(load))
                rows.append(row)
                ratios = " ".join(f"{row[k]:5.2f}x {label}" for k, label in
                                  (("x_timm_fp32_eager", "timm fp32"), ("x_timm_best_bf16", "timm bf16"))
                                  if row[k] is not None)
                frac = f"{row['fraction_of_peak']:.2f} of {dtype} peak" if row["fraction_of_peak"] else ""
                print(f"{name} b{batch:<3d} {v:24s} {t.images_per_s:8.1f} img/s (spread {t.spread:.2f}) {ratios} "
                      f"{frac}  err {errors[v]:.1e}  load {load[0]:.1f}", flush=True)
    return rows


def machine() -> dict:
    """CPU, flags relevant to low precision, threads and versions."""
    flags: list[str] = []
    model_name = platform.processor()
    try:
        info = Path("/proc/cpuinfo").read_text()
        for line in info.splitlines():
            if line.startswith("flags") and not flags:
                wanted = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
                flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = {"torch": torch.__version__, "timm": timm.__version__}
    for mod in ("onnxruntime", "openvino", "nncf", "torchao"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return dict(cpu=model_name, flags=flags, capabilities=cpu_capabilities(), threads=torch.get_num_threads(),
                logical_cpus=os.cpu_count(), python=platform.python_version(), versions=versions)


def measure_peaks(threads: int, quick: bool) -> dict[str, float]:
    """FLOP/s peaks of 1x1 convolutions: fp32, bf16 (oneDNN) and int8 (OpenVINO)."""
    repeats = 2 if quick else 5
    peaks = {"fp32": measure_peak(dtype=torch.float32, repeats=repeats).flops_per_s}
    if cpu_capabilities()["mkldnn_bf16"]:
        peaks["bf16"] = measure_peak(dtype=torch.bfloat16, repeats=repeats).flops_per_s
    try:
        peaks["int8"] = measure_int8_peak(repeats=repeats, threads=threads).flops_per_s
    except (ImportError, RuntimeError) as err:
        print(f"int8 peak not measured: {err}", flush=True)
    return peaks


def finish(report: dict, end_peaks: dict[str, float]) -> None:
    """Record the peaks measured again after the run and recompute every row's ``fraction_of_peak`` against
    the higher of the two measurements per dtype (on a shared machine a peak measured in a busy phase is
    several times too low: 118 vs 427 GFLOP/s fp32 in one session)."""
    report["peaks_flop_s_start"] = dict(report["peaks_flop_s"])
    report["peaks_flop_s_end"] = end_peaks
    peaks = {k: max(report["peaks_flop_s_start"].get(k, 0.0), end_peaks.get(k, 0.0))
             for k in {*report["peaks_flop_s_start"], *end_peaks}}
    report["peaks_flop_s"] = peaks
    for row in report["rows"]:
        row["fraction_of_peak"] = row["flop_s"] / peaks[row["dtype"]] if peaks.get(row["dtype"]) else None
    report["loadavg_end"] = list(os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="zoo names and/or efficientnet_bN")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--compile-batches", default="8", help="batch sizes at which compiled variants are timed")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--repeats-big", type=int, default=3, help="rounds when one call exceeds 200 GFLOP")
    parser.add_argument("--round-s", type=float, default=0.2, help="approximate seconds per variant and round")
    parser.add_argument("--calib-images", type=int, default=16, help="int8 calibration images (speed only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke test: RegNetX-200MF, batch 1, 2 rounds")
    parser.add_argument("--json", default=None, help="output (default: results/lowp-speed-cpu.json; --quick: none)")
    parser.add_argument("--plot", default=None, help="PNG of the results (default: beside the JSON)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batches, args.repeats, args.repeats_big, args.round_s = "regnetx_200mf", "1", 2, 1, 0.05
        args.calib_images, args.compile_batches = 8, ""
        if args.variants == ",".join(DEFAULT_VARIANTS):
            args.variants = "timm_eager,zoo_fp32_cl,zoo_bf16,ov_int8"
    json_path = args.json or (None if args.quick else str(RESULTS / "lowp-speed-cpu.json"))
    args.compile_batches = {int(b) for b in args.compile_batches.split(",") if b}
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "zoo_bf16" in variants and not cpu_capabilities()["mkldnn_bf16"]:
        parser.error("this CPU cannot run oneDNN bf16: drop the bf16 variants")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    started = time.time()
    report = dict(benchmark="lowp_speed", machine=machine(), settings=dict(vars(args), compile_batches=sorted(
        args.compile_batches)), loadavg_start=list(os.getloadavg()), peaks_flop_s=measure_peaks(args.threads,
                                                                                               args.quick), rows=[])
    print(f"peaks (GFLOP/s): { {k: round(v / 1e9, 1) for k, v in report['peaks_flop_s'].items()} }", flush=True)
    for name in args.models.split(","):
        report["rows"] += run_model(name, [int(b) for b in args.batches.split(",")], variants, args,
                                    report["peaks_flop_s"])
        report.update(loadavg_end=list(os.getloadavg()), wall_s=time.time() - started)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(json_path, json.dumps(report, indent=1))
    finish(report, measure_peaks(args.threads, args.quick))
    if json_path:
        atomic_write(json_path, json.dumps(report, indent=1))
        from harness.plot import plot_lowp

        plot = plot_lowp(report, args.plot or str(Path(json_path).with_suffix(".png")))
        print(f"wrote {json_path} and {plot} in {report['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
