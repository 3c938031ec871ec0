"""Low-precision CPU inference speed, every backend side by side (issue 12; the start of its benchmark).

Variants of one model (random weights, BN statistics of real images), timed interleaved in one process:
timm fp32 eager NCHW and bf16 autocast channels_last (eager and compiled); zoo fp32 / bf16 fused
channels_last (eager and compiled with weight freezing); int8 by torchao PT2E (X86InductorQuantizer +
torch.compile, and its eager ``lower_pt2e_quantized_to_x86`` path), ONNX Runtime ``quantize_static``
(QDQ, per-channel) and OpenVINO + NNCF (the library's ``quantize_model``); ONNX Runtime / OpenVINO fp32
and OpenVINO bf16. Prints images/s and ratios vs timm fp32 eager and vs zoo fp32 fused channels_last;
appends JSON lines to ``--jsonl``.

    python benchmarks/lowp_speed.py --models regnetx_200mf,regnety_4.0gf --batches 8,1 [--variants a,b]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F

import regnet_zoo
from regnet_zoo.inference import export_onnx, fuse_bn, optimize_for_inference, quantize_model
from regnet_zoo.inference.speed import Timing

TIMM_NAMES = {"regnetx_200mf": "regnetx_002", "regnetx_1.6gf": "regnetx_016", "regnety_4.0gf": "regnety_040",
              "regnetx_8.0gf": "regnetx_080"}
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
    export_onnx(fuse_bn(model), path, calib[0])
    return _ort_session(path, threads)


def ort_int8(tm, model, calib, threads=2):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = tempfile.mkdtemp()
    path, pre, out = (os.path.join(folder, n) for n in ("m.onnx", "pre.onnx", "q.onnx"))
    export_onnx(fuse_bn(model), path, calib[0])
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


VARIANTS = {f.__name__: f for f in (timm_eager, zoo_fp32_cl, zoo_fp32_compiled, timm_autocast_cl,
                                    timm_autocast_compiled, zoo_bf16, zoo_bf16_compiled, pt2e_int8_compiled,
                                    pt2e_int8_lowered, ort_fp32, ort_int8, ov_fp32, ov_bf16, ov_int8)}


def digit_images(n: int, size: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.as_tensor(load_digits().images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    return ((F.interpolate(x, size=size, mode="bilinear").expand(-1, 3, -1, -1) - 0.3) / 0.4).contiguous()


def run(name: str, batch: int, variants: list[str], repeats: int, jsonl: str | None) -> None:
    images = digit_images(128, 224)
    torch.manual_seed(0)
    model = regnet_zoo.create(name).train()
    with torch.no_grad():
        for chunk in images[:64].split(16):
            model(chunk)
    model.eval()
    tm = timm.create_model(TIMM_NAMES.get(name, name)).eval()
    tm.load_state_dict(model.state_dict())
    calib = list(images[:64].split(batch))[:max(8, 64 // batch)]
    x = images[64:64 + batch].clone()
    fns, build_s, iters = {}, {}, {}
    with torch.no_grad():
        ref = model(x)
        for v in variants:
            start = time.perf_counter()
            try:
                fn = VARIANTS[v](tm, model, calib)
                out = fn(x)
            except Exception as err:  # a backend that fails on this model is reported, the others still run
                print(f"{name} b{batch} {v}: FAILED {type(err).__name__}: {str(err)[:200]}", flush=True)
                continue
            build_s[v] = time.perf_counter() - start
            rel = float((out.float() - ref).abs().max() / ref.abs().max())
            fn(x)
            start = time.perf_counter()
            fn(x)
            iters[v] = max(1, round(0.25 / (time.perf_counter() - start)))
            fns[v] = fn
            print(f"{name} b{batch} {v:24s} built in {build_s[v]:5.1f} s, rel. logit error {rel:.1e}", flush=True)
        times = {v: Timing(v, batch) for v in fns}
        names = list(fns)
        for r in range(repeats):
            for v in names[r % len(names):] + names[:r % len(names)]:
                start = time.perf_counter()
                for _ in range(iters[v]):
                    fns[v](x)
                times[v].seconds.append((time.perf_counter() - start) / iters[v])
    base = times.get("timm_eager")
    zoo = times.get("zoo_fp32_cl")
    for v, t in times.items():
        ratios = " ".join(f"{t.images_per_s / b.images_per_s:5.2f}x {label}" for b, label in
                          ((base, "timm"), (zoo, "zoo fp32")) if b is not None)
        print(f"{name} b{batch} {v:24s} {t.images_per_s:8.1f} img/s (spread {t.spread:.2f})  {ratios}", flush=True)
        if jsonl:
            with open(jsonl, "a") as f:
                f.write(json.dumps({"model": name, "batch": batch, "variant": v, "img_s": t.images_per_s,
                                    "best_img_s": t.best_images_per_s, "spread": t.spread, "build_s": build_s[v],
                                    "seconds": t.seconds}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="regnetx_200mf,regnetx_1.6gf,regnety_4.0gf,regnetx_8.0gf")
    parser.add_argument("--batches", default="8,1")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jsonl", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            run(name, batch, args.variants.split(","), args.repeats, args.jsonl)


if __name__ == "__main__":
    main()
