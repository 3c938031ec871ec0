"""Low-precision inference: bf16 and int8 (OpenVINO + NNCF) accuracy, bad input, the quantized artefact."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, StageCfg
from regnet_zoo.inference import (
    BF16Inference,
    BF16UnsupportedError,
    CalibrationError,
    EmulatedBF16Warning,
    QuantizationDependencyError,
    QuantizationError,
    QuantizedArtifactError,
    QuantizedModel,
    UnsupportedDtypeError,
    calibration_batches,
    cpu_capabilities,
    load_quantized,
    optimize_for_inference,
    quantize_model,
    read_metadata,
    save_quantized,
)
from regnet_zoo.inference import precision as precision_mod
from regnet_zoo.inference.compare import compare_outputs, top1_accuracy
from regnet_zoo.lightning import DigitsDataModule, RegNetClassifier

from ..conftest import ROOT

pytest.importorskip("openvino")
pytest.importorskip("nncf")

DEMO = ROOT / "recipes" / "demo_digits.yaml"
TINY = AnyNetCfg(stages=(StageCfg(1, 16, 8, 1.0, 2), StageCfg(1, 32, 8, 1.0, 2)), stem_width=8, se_ratio=0.25)
needs_bf16 = pytest.mark.skipif(not cpu_capabilities()["mkldnn_bf16"], reason="this CPU cannot run oneDNN bf16")


@pytest.fixture(scope="module")
def digits():
    dm = DigitsDataModule(image_size=32, batch_size=64)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def small_model(bn_randomizer):
    """regnetx_200mf for 10 classes, untrained, with random BN statistics and affine (var 0.5-1.5)."""
    torch.manual_seed(0)
    return bn_randomizer(regnet_zoo.create("regnetx_200mf", num_classes=10), seed=1).eval()


@pytest.fixture(scope="module")
def small_int8(small_model, digits):
    return quantize_model(small_model, digits.train_set.images[:64], num_images=64, calibration_name="digits[:64]")


@pytest.fixture(scope="module")
def trained_digits(demo_run):
    """The demo recipe's trained model (the session's one demo run), and its data."""
    assert demo_run.returncode == 0, demo_run.stdout[-2000:]
    dm = DigitsDataModule(**yaml.safe_load(DEMO.read_text())["data"]["init_args"])
    dm.setup("fit")
    best = RegNetClassifier.load_from_checkpoint(demo_run.root / "checkpoints" / "best.ckpt", map_location="cpu")
    return best.model.eval(), dm


# ------------------------------------------------------------------ accuracy on the trained digits model
@pytest.mark.slow
def test_int8_top1_within_one_point_of_fp32(trained_digits):
    fp32, dm = trained_digits
    val = list(dm.val_dataloader())
    int8 = optimize_for_inference(fp32, "int8", calibration=dm, num_images=300)  # calibrates on the training split
    assert isinstance(int8, QuantizedModel) and int8.metadata["calibration"]["num_images"] == 300
    acc32, acc8 = top1_accuracy(fp32, val, 10), top1_accuracy(int8, val, 10)
    assert acc32 >= 0.95  # the demo's bar: the comparison is with a well-trained model
    assert acc8 >= acc32 - 0.01, (acc32, acc8)


@pytest.mark.slow
@needs_bf16
def test_bf16_top1_within_0p3_points_of_fp32(trained_digits):
    fp32, dm = trained_digits
    val = list(dm.val_dataloader())
    bf16 = optimize_for_inference(fp32, "bf16")
    acc32, acc16 = top1_accuracy(fp32, val, 10), top1_accuracy(bf16, val, 10)
    assert acc16 >= acc32 - 0.003, (acc32, acc16)


# ------------------------------------------------------------------ bf16
@needs_bf16
def test_bf16_logits_close_to_fp32(small_model, digits):
    """Measured max relative logit error 4-8e-3 (8-bit mantissa through 16 layers); bound with margin 2.5x."""
    bf16 = optimize_for_inference(small_model, "bf16")
    assert isinstance(bf16, BF16Inference) and bf16.num_classes == 10
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bf16.modules())
    x = digits.val_set.images[:64]  # float32 NCHW in
    with torch.no_grad():
        out = bf16(x)
    assert out.dtype == torch.float32 and out.shape == (64, 10)
    stats = compare_outputs(small_model, bf16, x.split(16))
    assert stats["max_rel_error"] < 2e-2, stats
    assert stats["max_rel_error"] > 1e-4, stats  # really computed in bf16 (fp32 would be ~1e-6)
    assert stats["top1_agreement"] >= 0.95, stats


def test_bf16_unsupported_cpu_raises_with_fix(small_model, monkeypatch):
    caps = {"mkldnn_bf16": False, "native_bf16": False, "amx": False, "vnni": False}
    monkeypatch.setattr(precision_mod, "cpu_capabilities", lambda: caps)
    with pytest.raises(BF16UnsupportedError):
        optimize_for_inference(small_model, "bf16")


@needs_bf16
def test_bf16_emulated_warns(small_model, monkeypatch):
    caps = {"mkldnn_bf16": True, "native_bf16": False, "amx": False, "vnni": False}
    monkeypatch.setattr(precision_mod, "cpu_capabilities", lambda: caps)
    with pytest.warns(EmulatedBF16Warning):
        optimize_for_inference(small_model, "bf16")


@pytest.mark.parametrize("dtype", ["fp16", "int4", torch.float16, "float64"])
def test_unsupported_dtype(small_model, dtype):
    with pytest.raises(UnsupportedDtypeError):
        optimize_for_inference(small_model, dtype)


def test_dtype_aliases_and_arguments(small_model, digits):
    fp32 = optimize_for_inference(small_model, torch.float32)
    assert next(fp32.parameters()).dtype == torch.float32
    with pytest.raises(ValueError):
        optimize_for_inference(small_model, "int8")
    with pytest.raises(ValueError):
        optimize_for_inference(small_model, "fp32", calibration=digits)


# ------------------------------------------------------------------ int8
@pytest.mark.slow
def test_int8_matches_fp32_on_real_images(small_model, small_int8, digits):
    x = digits.val_set.images[:128]
    stats = compare_outputs(small_model, small_int8, x.split(32))
    # quantization noise, not garbage: the fp32 logits' spread is ~1, int8 stays within a few percent
    assert 1e-4 < stats["max_rel_error"] < 0.15, stats
    assert stats["top1_agreement"] >= 0.9, stats
    one = small_int8(x[:1])
    torch.testing.assert_close(one, small_int8(x[:3])[:1], rtol=1e-4, atol=1e-4)  # any batch size
    with pytest.raises(ValueError):
        small_int8(torch.zeros(1, 3, 64, 64))


def test_int8_handles_grouped_conv_and_se(digits, bn_randomizer):
    """A RegNetY-style model (group width 8, SE) quantizes and keeps its predictions."""
    torch.manual_seed(0)
    model = bn_randomizer(regnet_zoo.create(TINY, num_classes=10)).eval()
    q = quantize_model(model, digits.train_set.images[:64], num_images=64)
    ops = {op.get_type_name() for op in q.ov_model.get_ops()}
    assert {"GroupConvolution", "Sigmoid", "FakeQuantize"} <= ops, ops
    stats = compare_outputs(model, q, digits.val_set.images[:128].split(32))
    assert stats["top1_agreement"] >= 0.9 and stats["max_rel_error"] < 0.15, stats


def test_quantizer_rejects_multi_output_model(digits):
    features = regnet_zoo.create("regnetx_200mf", features_only=True)
    with pytest.raises(QuantizationError):
        quantize_model(features, digits.train_set.images[:8], num_images=8)


def test_quantizer_rejects_non_module():
    with pytest.raises(TypeError):
        quantize_model(lambda x: x, torch.zeros(1, 3, 8, 8))


def test_missing_openvino_names_the_install(small_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    with pytest.raises(QuantizationDependencyError):
        quantize_model(small_model, torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------ calibration sources
def test_calibration_sources(small_model, digits, tmp_path):
    x = digits.train_set.images[:10]
    assert [len(b) for b in calibration_batches(x, small_model, num_images=7, batch_size=4)] == [4, 3]
    pairs = [(x[:6], torch.zeros(6)), (x[6:], torch.zeros(4))]
    assert sum(map(len, calibration_batches(pairs, small_model, num_images=8))) == 8
    assert sum(map(len, calibration_batches(digits, small_model, num_images=70))) == 70
    # "digits" at the model's input size (pretrained_cfg) and channel count
    gray16 = torch.nn.Module()
    gray16.pretrained_cfg, gray16.in_chans = {"input_size": (1, 16, 16)}, 1
    assert calibration_batches("digits", gray16, num_images=5)[0].shape == (5, 1, 16, 16)
    # an image folder goes through the model's eval transform (pretrained_cfg input size)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    model224 = regnet_zoo.create("regnetx_200mf")
    folder = calibration_batches(tmp_path, model224, num_images=5, batch_size=2)
    assert [tuple(b.shape) for b in folder] == [(2, 3, 224, 224), (2, 3, 224, 224), (1, 3, 224, 224)]


def test_calibration_errors(small_model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError):
        calibration_batches(tmp_path / "empty", small_model)
    with pytest.raises(CalibrationError):
        calibration_batches(tmp_path / "missing", small_model)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match="broken.jpg"):
        calibration_batches(bad, small_model)
    with pytest.raises(CalibrationError):
        calibration_batches([], small_model)
    with pytest.raises(CalibrationError):
        calibration_batches([torch.zeros(2, 1, 32, 32)], small_model)  # 1 channel, the model takes 3
    with pytest.raises(CalibrationError):
        calibration_batches([torch.zeros(2, 3, 32, 32, dtype=torch.uint8)], small_model)
    with pytest.raises(CalibrationError):
        calibration_batches([torch.full((2, 3, 32, 32), float("nan"))], small_model)
    with pytest.raises(CalibrationError):
        calibration_batches(42, small_model)
    out = tmp_path / "q"
    with pytest.raises(CalibrationError):
        quantize_model(small_model, tmp_path / "empty")
    assert not out.exists()


# ------------------------------------------------------------------ artefact
@pytest.mark.slow
def test_artifact_round_trip_in_fresh_process(small_int8, digits, tmp_path):
    out = save_quantized(small_int8, tmp_path / "q", {"accuracy": {"top1_val": 0.5}})
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml", "quantization.json"]
    meta = read_metadata(out)
    assert meta["backend"] == "openvino-nncf" and meta["dtype"] == "int8"
    assert meta["architecture"] == "regnetx_200mf" and meta["pretrained_cfg"]["num_classes"] == 10
    assert meta["calibration"] == {**meta["calibration"], "source": "digits[:64]", "num_images": 64}
    assert meta["accuracy"] == {"top1_val": 0.5} and set(meta["versions"]) >= {"openvino", "nncf", "torch"}
    x = digits.val_set.images[:4]
    torch.save(x, tmp_path / "x.pt")
    # one thread on both sides: OpenVINO's multi-threaded int8 kernels are not bit-reproducible on every CPU
    expected = QuantizedModel(small_int8.ov_model, small_int8.metadata, threads=1)(x)
    code = ("import sys, torch; from regnet_zoo.inference import load_quantized; "
            "m = load_quantized(sys.argv[1], threads=1); torch.save(m(torch.load(sys.argv[2])), sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                   check=True, timeout=300)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=1e-5, atol=1e-5)


def test_artifact_refuses_overwrite_and_detects_damage(small_int8, tmp_path):
    out = save_quantized(small_int8, tmp_path / "q")
    with pytest.raises(FileExistsError):
        save_quantized(small_int8, out)
    save_quantized(small_int8, out, {"note": "again"}, overwrite=True)
    assert read_metadata(out)["note"] == "again"
    with (out / "model.bin").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(QuantizedArtifactError):
        load_quantized(out)
    (out / "quantization.json").unlink()
    with pytest.raises(QuantizedArtifactError):
        load_quantized(out)
    with pytest.raises(QuantizedArtifactError):
        load_quantized(tmp_path / "nowhere")
    (out / "quantization.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(QuantizedArtifactError):
        read_metadata(out)


def test_failed_save_leaves_nothing(small_int8, tmp_path, monkeypatch):
    import openvino as ov

    def broken_save(model, path, compress_to_fp16=False):
        Path(path).write_text("<half")
        raise OSError("disk full")

    monkeypatch.setattr(ov, "save_model", broken_save)
    with pytest.raises(OSError):
        save_quantized(small_int8, tmp_path / "q")
    assert list(tmp_path.iterdir()) == []


def test_compare_outputs_by_hand():
    ref = lambda x: torch.tensor([[1.0, 2.0], [3.0, -4.0]])  # noqa: E731
    got = lambda x: torch.tensor([[1.5, 2.0], [3.0, 4.0]])  # noqa: E731
    stats = compare_outputs(ref, got, [torch.zeros(2, 1)])
    assert stats == {"top1_agreement": 0.5, "max_abs_error": 8.0, "max_rel_error": 2.0, "images": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert top1_accuracy(ref, [(torch.zeros(2, 1), torch.tensor([1, 0]))], 2) == 1.0
