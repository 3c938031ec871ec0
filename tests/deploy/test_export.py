"""ONNX (dynamic batch, checked with onnxruntime) and TorchScript export, API and `regnet-zoo export`."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import regnet_zoo
from regnet_zoo.cli import main as cli
from regnet_zoo.inference import ExportError, check_onnx, export_onnx, fuse_bn, to_torchscript
from regnet_zoo.inference.export import ONNX_INPUT

RES = 64
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated:FutureWarning")


@pytest.fixture(scope="module")
def model(x200_weights):
    return regnet_zoo.create("regnetx_200mf", pretrained=x200_weights).eval()


def _ort(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {ONNX_INPUT: x.numpy()})[0]


def test_onnx_fused_dynamic_batch(model, tmp_path):
    path = export_onnx(fuse_bn(model), tmp_path / "m.onnx", torch.randn(2, 3, RES, RES))
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops
    assert ops.count("Conv") == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    for n in (1, 3):
        x = torch.randn(n, 3, RES, RES)
        with torch.no_grad():
            ref = model(x).numpy()
        got = _ort(path, x)
        assert got.shape == (n, 1000)
        assert np.abs(got - ref).max() <= 1e-4
    assert check_onnx(path, model, [torch.randn(1, 3, RES, RES), torch.randn(3, 3, RES, RES)]) <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # one file, no temporaries left


def test_check_onnx_detects_a_different_model(model, tmp_path):
    path = export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, RES, RES), dynamic_batch=False)
    other = regnet_zoo.create("regnetx_200mf").eval()
    with pytest.raises(ExportError, match="differs"):
        check_onnx(path, other, [torch.randn(1, 3, RES, RES)])


@pytest.mark.parametrize("method", ["script", "trace"])
def test_torchscript_roundtrip(model, tmp_path, method):
    to_torchscript(fuse_bn(model), torch.randn(2, 3, RES, RES), tmp_path / "m.pt", method=method)
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    x = torch.randn(3, 3, RES + 32, RES)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-5)
    if method == "script":  # the compiled code keeps the stem's input check
        with pytest.raises(Exception, match="in_chans"):
            loaded(torch.randn(1, 4, RES, RES))


def test_cli_export_onnx(model, x200_weights, tmp_path, capsys):
    out = tmp_path / "sub" / "x200.onnx"
    rc = cli(["export", "regnetx_200mf", "--format", "onnx", "--fuse-bn", "--resolution", str(RES),
              "--weights", x200_weights, "-o", str(out)])
    assert rc == 0
    assert "max abs diff" in capsys.readouterr().out
    x = torch.randn(3, 3, RES, RES)
    with torch.no_grad():
        assert np.abs(_ort(out, x) - model(x).numpy()).max() <= 1e-4


def test_cli_export_torchscript(model, x200_weights, tmp_path):
    out = tmp_path / "x200.pt"
    assert cli(["export", "regnetx_200mf", "--format", "torchscript", "--resolution", str(RES),
                "--weights", x200_weights, "--torchscript-method", "trace", "-o", str(out)]) == 0
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), rtol=0, atol=1e-5)


def test_cli_export_errors(tmp_path, capsys):
    assert cli(["export", "regnetx_200m", "-o", str(tmp_path / "a.onnx")]) == 2
    assert "regnetx_200mf" in capsys.readouterr().err  # closest names
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weight file")
    assert cli(["export", "regnetx_200mf", "--weights", str(bad), "-o", str(tmp_path / "b.onnx")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()
