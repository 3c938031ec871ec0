"""`regnet-zoo quantize`, `export --int8` / `--format openvino` and `benchmark --dtype`: results and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import regnet_zoo
from regnet_zoo.cli import main as cli
from regnet_zoo.inference import cpu_capabilities, load_quantized, read_metadata
from regnet_zoo.inference import precision as precision_mod

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture
def images(tmp_path):
    """A folder of 6 random RGB images (two sub-folders), as an ImageNet-style calibration folder."""
    rng = np.random.default_rng(0)
    root = tmp_path / "calib"
    for i in range(6):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    return root


def _quantize(tmp_path, calib, *extra) -> tuple[int, object]:
    out = tmp_path / "q8"
    return cli(["quantize", "regnetx_200mf", "--calib", str(calib), "--out", str(out), *extra]), out


# ------------------------------------------------------------------ bad input: typed errors, nothing written
def test_quantize_empty_calibration_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out = _quantize(tmp_path, tmp_path / "empty")
    assert code == 2 and not out.exists()
    assert "--calib" in capsys.readouterr().err  # names the fix


def test_quantize_unreadable_calibration_image(tmp_path, images):
    (images / "c0" / "broken.jpg").write_bytes(b"not a jpeg")
    code, out = _quantize(tmp_path, images, "--num-images", "7")
    assert code == 2 and not out.exists()


def test_quantize_model_the_quantizer_cannot_handle(tmp_path, images, monkeypatch, capsys):
    import openvino as ov

    def refuse(*args, **kwargs):
        raise RuntimeError("unsupported operation")

    monkeypatch.setattr(ov, "convert_model", refuse)
    code, out = _quantize(tmp_path, images)
    assert code == 1 and not out.exists()
    assert "bf16" in capsys.readouterr().err  # names the alternative dtypes


def test_quantize_refuses_an_existing_artefact(tmp_path, images):
    out = tmp_path / "q8"
    out.mkdir()
    (out / "quantization.json").write_text("{}")
    code, _ = _quantize(tmp_path, images)
    assert code == 2 and (out / "quantization.json").read_text() == "{}"


def test_export_int8_argument_errors(tmp_path):
    out = tmp_path / "m.pt"
    assert cli(["export", "regnetx_200mf", "--format", "torchscript", "--int8", "--calib", "digits",
                "-o", str(out)]) == 2
    assert cli(["export", "regnetx_200mf", "--int8", "-o", str(tmp_path / "m.onnx")]) == 2  # no --calib
    assert cli(["export", "regnetx_200mf", "--calib", "digits", "-o", str(tmp_path / "m.onnx")]) == 2  # no --int8
    assert list(tmp_path.iterdir()) == []


def test_export_int8_empty_calibration_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "m-int8.onnx"
    assert cli(["export", "regnetx_200mf", "--int8", "--calib", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert not out.exists()


def test_benchmark_unsupported_dtype():
    with pytest.raises(SystemExit) as exc:
        cli(["benchmark", "regnetx_200mf", "--dtype", "fp16"])
    assert exc.value.code == 2


def test_benchmark_bf16_on_a_cpu_without_bf16(monkeypatch, capsys):
    monkeypatch.setattr(precision_mod, "cpu_capabilities",
                        lambda: {"mkldnn_bf16": False, "native_bf16": False, "amx": False, "vnni": False})
    assert cli(["benchmark", "regnetx_200mf", "--dtype", "bf16"]) == 2
    err = capsys.readouterr().err
    assert "fp32" in err and "int8" in err  # the fix: another dtype or another CPU


# ------------------------------------------------------------------ results
@pytest.mark.skipif(not cpu_capabilities()["mkldnn_bf16"], reason="this CPU cannot run oneDNN bf16")
def test_benchmark_dtype_bf16_rows(tmp_path):
    path = tmp_path / "b.json"
    assert cli(["benchmark", "regnetx_200mf", "--dtype", "bf16", "--batch", "1", "--resolution", "64",
                "--layouts", "nhwc", "--repeats", "1", "--threads", "1", "--json", str(path)]) == 0
    (result,) = json.loads(path.read_text())
    rows = {r["variant"]: r for r in result["rows"]}
    assert {"timm eager", "zoo fused", "timm bf16 autocast", "zoo bf16"} <= set(rows)
    assert rows["zoo bf16"]["dtype"] == "bf16" and rows["zoo fused"]["dtype"] == "fp32"
    assert all(r["images_per_s"] > 0 for r in result["rows"])


@pytest.mark.slow
def test_export_openvino_fp32_matches_pytorch(tmp_path, x200_weights):
    import openvino as ov

    out = tmp_path / "ov" / "x.xml"
    assert cli(["export", "regnetx_200mf", "--weights", x200_weights, "--format", "openvino", "--resolution", "64",
                "-o", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.bin", "x.xml"]
    model = regnet_zoo.create("regnetx_200mf", pretrained=x200_weights).eval()
    x = torch.randn(3, 3, 64, 64)
    got = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_quantize_cli_writes_a_loadable_artefact(tmp_path, images, x200_weights):
    code, out = _quantize(tmp_path, images, "--weights", x200_weights)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml", "quantization.json"]
    meta = read_metadata(out)
    assert meta["calibration"]["num_images"] == 6 and meta["source"]["name"] == "regnetx_200mf"
    assert meta["check"]["images"] == 6
    qmodel = load_quantized(out)
    model = regnet_zoo.create("regnetx_200mf", pretrained=x200_weights).eval()
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
    assert float((qmodel(x) - ref).abs().max() / ref.abs().max()) < 0.15


@pytest.mark.slow
def test_quantize_failed_save_leaves_nothing(tmp_path, images, monkeypatch):
    import openvino as ov

    def broken_save(model, path, compress_to_fp16=False):
        open(path, "w").write("<half")
        raise OSError("disk full")

    monkeypatch.setattr(ov, "save_model", broken_save)
    code, _ = _quantize(tmp_path, images)
    assert code == 1
    assert not (tmp_path / "q8").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib"]


@pytest.mark.slow
def test_export_onnx_int8_qdq_per_channel_close_to_fp32(tmp_path, images, x200_weights):
    import onnxruntime as ort

    out = tmp_path / "x-int8.onnx"
    assert cli(["export", "regnetx_200mf", "--weights", x200_weights, "--int8", "--calib", str(images),
                "-o", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "x-int8.onnx"]  # no temporary files left
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: i for i in graph.initializer}
    conv_inputs = {n.input[1] for n in graph.node if n.op_type == "Conv"}
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv_inputs]
    assert weight_dq and all(len(inits[n.input[1]].dims) == 1 and inits[n.input[1]].dims[0] > 1
                             for n in weight_dq)  # one scale per output channel
    model = regnet_zoo.create("regnetx_200mf", pretrained=x200_weights).eval()
    x = torch.randn(4, 3, 224, 224)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 0.15


@pytest.mark.slow
def test_benchmark_dtype_int8_rows(tmp_path):
    path = tmp_path / "b.json"
    assert cli(["benchmark", "regnetx_200mf", "--dtype", "int8", "--batch", "2", "--resolution", "64",
                "--layouts", "nchw", "--repeats", "1", "--threads", "1", "--json", str(path)]) == 0
    rows = {r["variant"]: r for r in json.loads(path.read_text())[0]["rows"]}
    assert rows["zoo int8"]["dtype"] == "int8" and rows["zoo int8"]["images_per_s"] > 0
