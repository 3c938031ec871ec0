"""ONNX (dynamic batch, checked with onnxruntime) and TorchScript export, API and `regnet-zoo export`."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import regnet_zoo
from regnet_zoo.cli import main as cli
from regnet_zoo.inference import ExportDependencyError, ExportError, check_onnx, export_onnx, fuse_bn, to_torchscript
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
        with pytest.raises(torch.jit.Error, match="in_chans"):  # TorchScript re-raises ours as its own type
            loaded(torch.randn(1, 4, RES, RES))


@pytest.mark.slow
def test_cli_export_onnx(model, x200_weights, tmp_path, capsys):
    out = tmp_path / "sub" / "x200.onnx"
    rc = cli(["export", "regnetx_200mf", "--format", "onnx", "--fuse-bn", "--resolution", str(RES),
              "--weights", x200_weights, "-o", str(out)])
    assert rc == 0
    assert "max abs diff" in capsys.readouterr().out
    x = torch.randn(3, 3, RES, RES)
    with torch.no_grad():
        assert np.abs(_ort(out, x) - model(x).numpy()).max() <= 1e-4


@pytest.mark.slow
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


@pytest.mark.slow
def test_onnx_external_data_loads_from_the_final_path(model, tmp_path):
    """Weights beside the file (as for regnety_128gf / 256gf above 2 GB), forced on a small model."""
    path = export_onnx(model, tmp_path / "m.onnx", torch.randn(2, 3, RES, RES), external_data=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]  # no temporaries left
    proto = onnx.load(str(path), load_external_data=False)
    external = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    inline = [t for t in proto.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert "stem.conv.weight" in {t.name for t in external}
    assert all(np.prod(t.dims) <= 256 for t in inline)  # only small constants (shapes) stay in the file
    assert {kv.value for t in external for kv in t.external_data if kv.key == "location"} == {"m.onnx.data"}
    assert (tmp_path / "m.onnx").stat().st_size < (tmp_path / "m.onnx.data").stat().st_size / 10
    moved = tmp_path / "elsewhere"  # the pair stays valid wherever it is moved (relative location)
    moved.mkdir()
    for name in ("m.onnx", "m.onnx.data"):
        shutil.move(tmp_path / name, moved / name)
    x = torch.randn(3, 3, RES, RES)
    with torch.no_grad():
        assert np.abs(_ort(moved / "m.onnx", x) - model(x).numpy()).max() <= 1e-4


@pytest.mark.slow
def test_onnx_failed_save_leaves_no_files(model, tmp_path, monkeypatch):
    def broken_save(self, destination, **kwargs):
        with open(destination, "wb") as f:
            f.write(b"half a model")
        with open(f"{destination}.data", "wb") as f:
            f.write(b"half the weights")
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(torch.onnx.ONNXProgram, "save", broken_save)
    with pytest.raises(ExportError, match=r"saving the ONNX export of regnetx_200mf .*disk full"):
        export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, RES, RES), dynamic_batch=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_metadata_holds_the_preprocessing(x200_weights, tmp_path):
    model = regnet_zoo.create("regnetx_200mf", pretrained=x200_weights, num_classes=10).eval()
    path = export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, RES, RES), dynamic_batch=False,
                       metadata={"exported_by": "test"})
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    # timm's / pycls' ImageNet preprocessing of RegNets: 224 px, bilinear, crop 0.875, ImageNet mean / std
    assert props["architecture"] == "regnetx_200mf" and props["num_classes"] == "10"
    assert json.loads(props["input_size"]) == [3, 224, 224]
    assert json.loads(props["mean"]) == [0.485, 0.456, 0.406] and json.loads(props["std"]) == [0.229, 0.224, 0.225]
    assert props["interpolation"] == "bilinear" and float(props["crop_pct"]) == 0.875
    assert props["exported_by"] == "test"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["architecture"] == "regnetx_200mf"


def test_missing_onnxscript_is_a_clear_error(model, x200_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` now fails
    with pytest.raises(ExportDependencyError, match=r"onnxscript.*pip install 'regnet-zoo\[export\]'"):
        export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, RES, RES))
    rc = cli(["export", "regnetx_200mf", "--weights", x200_weights, "--resolution", str(RES),
              "-o", str(tmp_path / "c.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "regnet-zoo export regnetx_200mf: ONNX export needs" in err and "regnet-zoo[export]" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_is_a_clear_error(model, tmp_path, monkeypatch):
    path = export_onnx(model, tmp_path / "m.onnx", torch.randn(1, 3, RES, RES), dynamic_batch=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportDependencyError, match=r"checking an ONNX file needs onnxruntime.*regnet-zoo\[export\]"):
        check_onnx(path, model, [torch.randn(1, 3, RES, RES)])


@pytest.mark.slow
def test_cli_without_onnxruntime_keeps_the_export_and_says_so(x200_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = tmp_path / "x.onnx"
    rc = cli(["export", "regnetx_200mf", "--weights", x200_weights, "--resolution", str(RES), "--static-batch",
              "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "needs onnxruntime" in err and "regnet-zoo[export]" in err and "--no-check" in err
    assert onnx.load(str(out)).graph.node  # a complete file
    assert cli(["export", "regnetx_200mf", "--weights", x200_weights, "--resolution", str(RES), "--static-batch",
                "--no-check", "-o", str(out)]) == 0


class DataDependent(nn.Module):
    """A branch on a tensor's value: torch.export cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_exporter_failure_names_the_model_and_the_cause(tmp_path):
    with pytest.raises(ExportError, match=r"ONNX export of DataDependent failed in torch\.onnx\.export .*"
                                          r"caused by .*data-dependent") as info:
        export_onnx(DataDependent(), tmp_path / "d.onnx", torch.randn(2, 4))
    assert "\x1b[" not in str(info.value)  # no terminal colour codes
    assert list(tmp_path.iterdir()) == []


def test_torchscript_failure_suggests_tracing(tmp_path):
    class Unscriptable(nn.Module):
        def forward(self, x):
            return x * len({id(x): 1})  # dict of id(): not TorchScript

    with pytest.raises(ExportError, match=r"TorchScript script of Unscriptable failed: .*try method='trace'"):
        to_torchscript(Unscriptable(), path=tmp_path / "u.pt")
    assert list(tmp_path.iterdir()) == []
