"""FX tracing (torch.fx, torchvision's create_feature_extractor), TorchScript and torch.compile of the registry
models, as timm's tests/test_models.py checks its models; the stem's input check survives each of them."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, StageCfg
from regnet_zoo.counting import model_complexity
from regnet_zoo.registry import MODELS

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*deprecated:FutureWarning",
                                        r"ignore:The TorchScript type system:UserWarning")

GFLOPS = {name: model_complexity(e.cfg)["flops"] / 1e9 for name, e in MODELS.items()}
TRACED = [n for n, g in GFLOPS.items() if g <= 40]  # numerics: every model up to 40 GF (at 224 px)
PER_CLASS = ["regnetx_200mf", "regnety_800mf_tv", "regnetz_500mf"]  # one X, one Y (SE), one Z (linear block)
QUICK = [*PER_CLASS, "regnetx_400mf_tv", "regnety_200mf"]  # numerics on every run; the other models are slow
TINY = AnyNetCfg(stages=(StageCfg(1, 16, 8, 1.0, 2), StageCfg(2, 32, 8, 1.0, 2)), stem_width=8, se_ratio=0.25)


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str | AnyNetCfg, **kwargs) -> nn.Module:
    """An eval-mode model whose blocks do not start as their shortcuts and whose BN is not the identity."""
    torch.manual_seed(0)
    model = regnet_zoo.create(name, zero_init_last=False, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def _stage_nodes(model: nn.Module) -> dict[str, str]:
    return {name: name for name in ["stem", *model.stage_names, "head"]}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_symbolically_traces(name):  # on the meta device: structure only, also for the 10B model
    model = regnet_zoo.create(name, device="meta").eval()
    traced = torch.fx.symbolic_trace(model)
    # nothing was traced around: the graph module keeps every parameter and BN statistic of the model
    used = {k for k in traced.state_dict() if not k.endswith("num_batches_tracked")}  # unused in eval mode
    assert used == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    # the input check is one recorded call, not evaluated on a proxy
    assert [n.target.__name__ for n in traced.graph.nodes if n.op == "call_function"][0] == "check_input"
    x = torch.empty(2, 3, 64, 64, device="meta")
    assert traced(x).shape == model(x).shape == (2, 1000)


def _check_traced_equals_eager(name: str) -> None:
    model = _model(name)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        feats = model.forward_intermediates(x, intermediates_only=True)
        traced = torch.fx.symbolic_trace(model)(x)
        extracted = create_feature_extractor(model, return_nodes=_stage_nodes(model))(x)
    assert torch.isfinite(ref).all()
    assert torch.equal(traced, ref)
    assert list(extracted) == ["stem", *model.stage_names, "head"]
    assert all(torch.equal(extracted[k], f) for k, f in zip(extracted, feats))
    assert torch.equal(extracted["head"], ref)


@pytest.mark.parametrize("name", QUICK)
def test_traced_models_equal_eager(name):
    _check_traced_equals_eager(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TRACED if n not in QUICK])
def test_traced_other_models_equal_eager(name):
    _check_traced_equals_eager(name)


def test_features_only_and_train_mode_trace():
    x = torch.randn(2, 3, 64, 64)
    feats = _model("regnety_200mf", features_only=True, out_indices=(2, 4))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(torch.fx.symbolic_trace(feats)(x), feats(x), strict=True))
    # train mode: BN batch statistics and drop path (the same random draws under the same seed)
    model = _model("regnety_200mf", drop_path_rate=0.1).train()
    traced = torch.fx.symbolic_trace(model)
    torch.manual_seed(2)
    ref = model(x)
    torch.manual_seed(2)
    assert torch.equal(traced(x), ref)
    # torchvision's extractor drops DropPath's unused in-place `div_` result (its dead-code pass; timm's
    # models alike), so its train-mode graph is compared without drop path
    model = _model("regnety_200mf").train()
    extractor = create_feature_extractor(model, return_nodes={"s4": "out"}, suppress_diff_warning=True)
    assert torch.equal(extractor(x)["out"], model.forward_intermediates(x, indices=[4], intermediates_only=True)[0])


@pytest.mark.parametrize("name", PER_CLASS)
def test_torchscript_per_size_class(name):
    model = _model(name)
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 64, 72)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(torch.jit.Error):  # TorchScript's wrapper of the stem's ValueError
        scripted(torch.randn(2, 4, 64, 64))


def test_torchscript_features_only():
    feats = _model("regnetz_500mf", features_only=True)
    scripted = torch.jit.script(feats)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(scripted(x), feats(x), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_wrong_input_raises_value_error_eager_and_traced():
    model = _model("regnetx_200mf", in_chans=1)
    traced = torch.fx.symbolic_trace(model)
    extractor = create_feature_extractor(model, return_nodes=["s2"])
    for fn in (model, traced, extractor):
        assert fn(torch.randn(1, 1, 32, 32)) is not None
        with pytest.raises(ValueError):
            fn(torch.randn(1, 3, 32, 32))  # channels
        with pytest.raises(ValueError):
            fn(torch.randn(1, 32, 32))  # no batch dimension


def test_compile_fullgraph():
    model = _model(TINY, num_classes=10)
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # graph capture only: no C++ compiler
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
