"""The full benchmark protocol (benchmarks/harness, benchmarks/deploy_speed.py): peak measurement,
activation memory, EfficientNet pairs, report. ``benchmarks/`` is put on sys.path by conftest.py."""

from __future__ import annotations

import json

import deploy_speed
import pytest
import timm
import torch
from harness import BenchConfig, run_benchmark, summary
from harness.memory import saved_activation_bytes
from harness.models import FLOPS_MATCHED, zoo_model
from harness.peak import conv1x1_flops, measure_peak
from torch import nn

import regnet_zoo
from regnet_zoo.design_space.efficientnet import (
    EFFICIENTNET_RESOLUTION,
    efficientnet_complexity,
    efficientnet_resolution,
    traced_complexity,
)
from regnet_zoo.inference.speed import flush_denormal_enabled
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import get_entry


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


def test_tracer_agrees_with_the_exact_count():
    cfg = get_entry("regnety_200mf").cfg
    with torch.device("meta"):  # no memory, no compute
        model = AnyNet(cfg)
    traced = traced_complexity(model, 224)
    exact = regnet_zoo.complexity("regnety_200mf")
    assert traced["params"] == exact["params"] and traced["acts"] == exact["acts"]
    # pycls counts one flop per bias output (SE convs, classifier); torch's flop counter does not
    assert 0 < exact["flops"] - traced["flops"] < 1e-3 * exact["flops"]
    assert zoo_model("regnety_200mf").flops == 2 * exact["flops"]  # zoo models: the exact count, 2 FLOPs per MAC


def test_efficientnet_table_and_counts():
    # native resolutions: timm's tf_efficientnet_bN (the paper's weights) input sizes
    for v, res in EFFICIENTNET_RESOLUTION.items():
        assert timm.models.get_pretrained_cfg(f"tf_efficientnet_{v}").input_size == (3, res, res)
    assert efficientnet_resolution(3) == efficientnet_resolution("B3") == efficientnet_resolution("efficientnet_b3")
    b0 = efficientnet_complexity("b0")  # "Designing Network Design Spaces" Table 4: 0.39 GF, 5.3 M params, 6.7 M acts
    assert b0["resolution"] == 224 and b0["flops"] / 1e9 == pytest.approx(0.39, abs=0.01)
    assert b0["params"] / 1e6 == pytest.approx(5.3, abs=0.05) and b0["acts"] / 1e6 == pytest.approx(6.7, abs=0.06)
    with pytest.raises(ValueError, match="b0, b1"):
        efficientnet_resolution("b8")


def test_flops_matched_pairs_are_matched():
    effs = {v: 0.0 for v in FLOPS_MATCHED}
    for v in effs:
        with torch.device("meta"):
            model = timm.create_model(f"efficientnet_{v}")
        effs[v] = traced_complexity(model, efficientnet_resolution(v))["flops"]
    for v, regnets in FLOPS_MATCHED.items():
        for name in regnets:  # Table 4 pairs each EfficientNet with RegNets of at most its flops, within 25%
            assert 0.75 < regnet_zoo.complexity(name)["flops"] / effs[v] < 1.05, (v, name)
    assert FLOPS_MATCHED["b5"] == ("regnetx_8.0gf", "regnety_8.0gf")


@pytest.mark.slow
def test_headline_pair_infer_only():
    cfg = BenchConfig(models=(), headline=True, train=False, memory=False, peak=False, batch=1, warmup=0, repeats=1,
                      layouts=("nchw",))
    assert cfg.pairs() == [("b5", ("regnetx_8.0gf",))]
    rep = run_benchmark(cfg, log=lambda s: None)
    assert {h["a"] for h in rep.headline} == {"regnetx_8.0gf/zoo@nchw", "regnetx_8.0gf/zoo-fused@nhwc"}
    for h in rep.headline:
        assert h["b"] == "efficientnet_b5@nchw" and h["efficientnet_resolution"] == 456
        assert h["ratio"] == pytest.approx(h["a_images_per_s"] / h["b_images_per_s"])
    rows = {r["name"]: r for r in rep.inference}
    assert rows["efficientnet_b5@nchw"]["resolution"] == 456 and rows["regnetx_8.0gf/zoo@nchw"]["resolution"] == 224
    assert all(r["group"] == "pair:efficientnet_b5" for r in rep.inference)
    assert "HEADLINE [infer] regnetx_8.0gf/zoo@nchw vs efficientnet_b5@nchw" in summary(rep)


def test_pairs_follow_table_4():
    cfg = BenchConfig(models=(), efficientnets=("b5", "B0", "efficientnet_b7"), headline=True)
    assert cfg.pairs() == [("b5", ("regnetx_8.0gf", "regnety_8.0gf")), ("b0", ("regnety_400mf",)), ("b7", ())]


@pytest.mark.slow
def test_deploy_speed_small_run(tmp_path, capsys):
    out_json, out_png = tmp_path / "res" / "bench.json", tmp_path / "res" / "bench.png"
    rc = deploy_speed.main(["--preset", "quick", "--models", "regnetx_200mf", "--efficientnets", "b0", "--batch", "1",
                            "--train-batch", "2", "--memory-batch", "2", "--warmup", "0", "--repeats", "1",
                            "--layouts", "nchw", "--no-peak-memory", "--details", "--json", str(out_json),
                            "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "GOAL" not in text  # the numbers, not a verdict
    for part in ("same architecture, inference (batch 1, 224 px)", "zoo/timm nchw", "fused/timm",
                 "flops-matched pairs (paper Table 4)", "regnety_400mf @224 / efficientnet_b0 @224",
                 "training-step memory, batch 2", "saved for bwd = autograd saved_tensors_hooks",
                 "all ratios (median calls; fastest calls)"):
        assert part in text, part
    rep = json.loads(out_json.read_text())
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["bench.json", "bench.png"]  # no temporaries
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    peak = rep["machine"]["peak_flops_per_s"]
    infer = {r["name"]: r for r in rep["inference"]}
    assert set(infer) == {"regnetx_200mf/zoo@nchw", "regnetx_200mf/timm@nchw", "regnetx_200mf/zoo-fused@nhwc",
                          "efficientnet_b0@nchw", "regnety_400mf/zoo@nchw", "regnety_400mf/zoo-fused@nhwc"}
    row = infer["regnetx_200mf/zoo@nchw"]
    assert row["flops"] == 2 * regnet_zoo.complexity("regnetx_200mf")["flops"] == infer["regnetx_200mf/timm@nchw"][
        "flops"]
    assert row["flops_per_s"] == pytest.approx(row["flops"] * row["images_per_s"])
    assert row["fraction_of_peak"] == pytest.approx(row["flops_per_s"] / peak)
    assert infer["efficientnet_b0@nchw"]["flops"] == 2 * efficientnet_complexity("b0")["flops"]
    train = {r["name"]: r for r in rep["training"]}
    assert train["regnetx_200mf/zoo@nchw"]["flops_per_s"] == pytest.approx(
        3 * row["flops"] * train["regnetx_200mf/zoo@nchw"]["images_per_s"])
    ratio = next(r for r in rep["ratios"] if r["mode"] == "infer" and r["what"] == "zoo eager / timm eager (nchw)")
    assert ratio["ratio"] == pytest.approx(row["images_per_s"] / infer["regnetx_200mf/timm@nchw"]["images_per_s"])
    pair = {(p["mode"], p["what"]): p for p in rep["pairs"]}
    assert set(pair) == {("infer", "eager nchw"), ("infer", "zoo-fused nhwc / eager best layout"),
                         ("train", "eager nchw")}
    p = pair[("infer", "eager nchw")]
    assert (p["a"], p["b"]) == ("regnety_400mf/zoo@nchw", "efficientnet_b0@nchw")
    assert p["ratio"] == pytest.approx(infer[p["a"]]["images_per_s"] / infer[p["b"]]["images_per_s"])
    mem = {m["name"]: m for m in rep["memory"]}
    assert set(mem) == {"regnetx_200mf/zoo", "regnety_400mf/zoo", "efficientnet_b0"}
    zoo_mem = mem["regnetx_200mf/zoo"]
    acts = regnet_zoo.complexity("regnetx_200mf")["acts"]
    assert zoo_mem["acts"] == acts and zoo_mem["analytic_bytes"] == acts * 2 * 4 and zoo_mem["peak_bytes"] is None
    # every conv output is kept for backward (by BN), plus the input: at least the analytic count
    assert zoo_mem["saved_for_backward_bytes"] >= zoo_mem["analytic_bytes"]
    assert mem["efficientnet_b0"]["acts"] == efficientnet_complexity("b0")["acts"]
    # Table 4's point: at matched flops, EfficientNet-B0 has more activations and keeps more memory than Y-400MF
    assert mem["efficientnet_b0"]["acts"] > mem["regnety_400mf/zoo"]["acts"]
    assert mem["efficientnet_b0"]["saved_for_backward_bytes"] > mem["regnety_400mf/zoo"]["saved_for_backward_bytes"]


@pytest.mark.slow
def test_measured_process_peak_memory():
    cfg = BenchConfig(models=("regnetx_200mf",), infer=False, train=False, peak=False, memory_batch=2)
    rep = run_benchmark(cfg, log=lambda s: None)
    (row,) = rep.memory
    assert row["peak_method"].startswith("measured: rise of the process's peak RSS")
    assert row["saved_method"].startswith("autograd saved_tensors_hooks")
    input_bytes = 2 * 3 * 224 * 224 * 4  # allocated before the step, but saved for backward by the stem
    # all saved tensors are alive at once at the end of the forward pass; backward temporaries come on top
    assert row["saved_for_backward_bytes"] - input_bytes <= row["peak_bytes"] < 2 * row["saved_for_backward_bytes"]
    assert row["peak_per_analytic"] == pytest.approx(row["peak_bytes"] / row["analytic_bytes"])
    assert "peak = measured: rise of the process's peak RSS" in summary(rep)


def test_benchmark_restores_threads_and_denormal_flushing():
    seen = []
    cfg = BenchConfig(models=("regnetx_200mf",), torchvision=False, train=False, memory=False, peak=False, batch=1,
                      warmup=0, repeats=1, layouts=("nchw",), threads=1)
    threads = torch.get_num_threads()
    for before in (False, True):
        torch.set_flush_denormal(before)
        try:
            assert flush_denormal_enabled() is before
            run_benchmark(cfg, log=lambda s: seen.append((flush_denormal_enabled(), torch.get_num_threads())))
            assert flush_denormal_enabled() is before and torch.get_num_threads() == threads
        finally:
            torch.set_flush_denormal(False)
    assert seen and all(s == (True, 1) for s in seen)  # on while it ran


@pytest.mark.parametrize("argv", [["--models", "regnetx_200m"], ["--modes", "speed"], ["--layouts", "nhcw"],
                                  ["--efficientnets", "b9"], ["--device", "tpu7"], ["--threads", "4", "--device"]])
def test_deploy_speed_bad_arguments(argv, tmp_path):
    with pytest.raises(SystemExit) as e:  # argparse's error (status 2), not a traceback
        deploy_speed.parse_args(["--preset", "quick", *argv], tmp_path)
    assert e.value.code == 2


@pytest.mark.parametrize("cuda_present", [False, True])
def test_deploy_speed_names_results_by_device(tmp_path, monkeypatch, cuda_present):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_present)
    auto = "cuda" if cuda_present else "cpu"
    for argv, device in ((["--device=cuda"], "cuda"), (["--device", "cuda:1"], "cuda"), (["--device=cpu"], "cpu"),
                         (["--device", "auto"], auto), ([], auto), (["--threads", "4"], auto)):
        a, cfg = deploy_speed.parse_args(argv, tmp_path)
        assert (a.json, a.plot) == (str(tmp_path / f"deploy-{device}.json"), str(tmp_path / f"deploy-{device}.png"))
        assert cfg.batch == (256 if device == "cuda" else 8) and cfg.compile and cfg.headline  # the full preset
    a, _ = deploy_speed.parse_args(["--json", str(tmp_path / "x.json")], tmp_path)
    assert (a.json, a.plot) == (str(tmp_path / "x.json"), None)  # the committed results stay as they are
    a, cfg = deploy_speed.parse_args(["--preset", "quick", "--batch", "3"], tmp_path)
    assert a.json is None and a.plot is None and cfg.batch == 3 and cfg.models == ("regnetx_200mf",)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_benchmark_and_memory():
    cfg = BenchConfig(models=("regnetx_200mf",), device="cuda", batch=8, train_batch=8, memory_batch=8, warmup=1,
                      repeats=2)
    rep = run_benchmark(cfg, log=lambda s: None)
    assert rep.machine["amp"] == "bfloat16" and rep.machine["peak_flops_per_s"] > 1e12
    mem = rep.memory[0]
    assert mem["peak_method"].startswith("measured: rise of cuda") and mem["peak_bytes"] > 0
    assert mem["saved_for_backward_bytes"] > 0
    assert all(0 < r["fraction_of_peak"] < 1 for r in rep.inference + rep.training)
