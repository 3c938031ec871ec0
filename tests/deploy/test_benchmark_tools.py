"""Benchmark library: interleaved timing, peak measurement, activation memory, report and CLI."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

import regnet_zoo
from regnet_zoo.benchmark import (
    BenchConfig,
    conv1x1_flops,
    measure_peak,
    run_benchmark,
    saved_activation_bytes,
    summary,
    time_interleaved,
)
from regnet_zoo.benchmark.models import forward_flops
from regnet_zoo.cli import main as cli


def test_interleaved_order_and_medians():
    calls = []
    cases = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    out = time_interleaved(cases, 4, warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(t.seconds) == 3 and t.batch == 4 for t in out.values())


def test_timing_ratio_of_known_durations():
    cases = {"short": lambda: time.sleep(0.004), "long": lambda: time.sleep(0.012)}
    out = time_interleaved(cases, {"short": 1, "long": 2}, warmup=0, repeats=5)
    assert 0.012 <= out["long"].median_s < 0.05
    ratio = out["short"].images_per_s / out["long"].images_per_s  # 1/0.004 vs 2/0.012 -> 1.5
    assert 1.1 < ratio < 1.7
    with pytest.raises(ValueError):
        time_interleaved(cases, 1, repeats=0)


def test_conv_flops_and_peak():
    assert conv1x1_flops(8, 1024, 1024, 28) == 2 * 8 * 1024 * 1024 * 28 * 28
    peak = measure_peak("cpu", shapes=((2, 64, 64, 8), (2, 128, 128, 8)), repeats=2)
    assert peak.shape in ((2, 64, 64, 8), (2, 128, 128, 8)) and peak.device == "cpu"
    assert 1e8 < peak.flops_per_s < 1e13


def test_saved_activation_bytes_by_hand():
    x = torch.randn(5, 16)
    mlp = nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(), nn.Linear(32, 4, bias=False))
    # Linear 1 keeps its input (5x16); ReLU keeps its output (5x32), which Linear 2 keeps too (counted once)
    assert saved_activation_bytes(mlp, x) == 4 * (5 * 16 + 5 * 32)
    inplace = nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(inplace=True), nn.Linear(32, 4, bias=False))
    assert saved_activation_bytes(inplace, x) == 4 * (5 * 16 + 5 * 32)  # in-place ReLU shares the storage


def test_flop_counter_matches_pycls_count():
    model = regnet_zoo.create("regnety_200mf")
    macs = regnet_zoo.complexity("regnety_200mf")["flops"]  # pycls count incl. one flop per bias output
    assert abs(forward_flops(model, 224) / 2 - macs) / macs < 1e-4


def test_headline_pair_infer_only():
    cfg = BenchConfig(models=(), headline=True, train=False, memory=False, peak=False, batch=1, warmup=0, repeats=1,
                      layouts=("nchw",))
    rep = run_benchmark(cfg, log=lambda s: None)
    assert {h["a"] for h in rep.headline} == {"regnetx_8.0gf/zoo@nchw", "regnetx_8.0gf/zoo-fused@nhwc"}
    for h in rep.headline:
        assert h["b"] == "efficientnet_b5@nchw"
        assert h["ratio"] == pytest.approx(h["a_images_per_s"] / h["b_images_per_s"])
    assert "HEADLINE [infer] regnetx_8.0gf/zoo@nchw vs efficientnet_b5@nchw" in summary(rep)


def test_cli_benchmark_small_run(tmp_path, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = cli(["benchmark", "--models", "regnetx_200mf", "--efficientnets", "b0", "--batch", "1", "--train-batch", "2",
              "--memory-batch", "2", "--warmup", "0", "--repeats", "1", "--layouts", "nchw",
              "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "zoo eager / timm eager (nchw)" in text and "GOAL" in text
    rep = json.loads(out_json.read_text())
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    peak = rep["machine"]["peak_flops_per_s"]
    infer = {r["name"]: r for r in rep["inference"]}
    assert set(infer) == {"regnetx_200mf/zoo@nchw", "regnetx_200mf/timm@nchw", "regnetx_200mf/zoo-fused@nhwc",
                          "efficientnet_b0@nchw"}
    row = infer["regnetx_200mf/zoo@nchw"]
    assert row["flops_per_s"] == pytest.approx(row["flops"] * row["images_per_s"])
    assert row["fraction_of_peak"] == pytest.approx(row["flops_per_s"] / peak)
    train = {r["name"]: r for r in rep["training"]}
    assert train["regnetx_200mf/zoo@nchw"]["flops_per_s"] == pytest.approx(
        3 * row["flops"] * train["regnetx_200mf/zoo@nchw"]["images_per_s"])
    ratio = next(r for r in rep["ratios"] if r["mode"] == "infer" and r["what"] == "zoo eager / timm eager (nchw)")
    assert ratio["ratio"] == pytest.approx(row["images_per_s"] / infer["regnetx_200mf/timm@nchw"]["images_per_s"])
    mem = {m["name"]: m for m in rep["memory"]}
    zoo_mem = mem["regnetx_200mf/zoo"]
    acts = regnet_zoo.complexity("regnetx_200mf")["acts"]
    assert zoo_mem["acts"] == acts and zoo_mem["analytic_bytes"] == acts * 2 * 4
    # every conv output is kept for backward (by BN), plus the input: at least the analytic count
    assert zoo_mem["measured_bytes"] >= zoo_mem["analytic_bytes"]
    assert mem["efficientnet_b0"]["measured_bytes"] > zoo_mem["measured_bytes"]  # EfficientNet: many more acts


def test_cli_benchmark_bad_arguments(capsys):
    assert cli(["benchmark", "--models", "regnetx_200m"]) == 2
    assert "regnetx_200mf" in capsys.readouterr().err
    assert cli(["benchmark", "--modes", "speed"]) == 2
    assert cli(["benchmark", "--layouts", "nhcw"]) == 2
    assert cli(["benchmark", "--efficientnets", "b9"]) == 2
    assert "b0, b1" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_benchmark_and_memory():
    cfg = BenchConfig(models=("regnetx_200mf",), device="cuda", batch=8, train_batch=8, memory_batch=8, warmup=1,
                      repeats=2)
    rep = run_benchmark(cfg, log=lambda s: None)
    assert rep.machine["amp"] == "bfloat16" and rep.machine["peak_flops_per_s"] > 1e12
    mem = rep.memory[0]
    assert mem["method"].startswith("cuda") and mem["measured_bytes"] > 0
    assert all(0 < r["fraction_of_peak"] < 1 for r in rep.inference + rep.training)
