"""Export to torchvision's and transformers' layouts: their own models load the files strictly, same outputs.

References are the real libraries' models (``torchvision.models.regnet_*``,
``transformers.RegNetForImageClassification.from_pretrained``) fed what ``export_layout`` wrote. The
written tensors are bit-identical to ours (read back through the import converters); outputs agree to
float rounding only (``TOL``): safetensors files are memory-mapped at offsets that are not 64-byte
aligned, and oneDNN's kernels then sum in another order (seen: 3e-6 on logits of size ~1, one thread).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import regnet_zoo
from regnet_zoo.registry import MODELS
from regnet_zoo.weights.convert import convert_state_dict, export_layout, to_transformers, transformers_config
from regnet_zoo.weights.errors import ExportError

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
FAST_TV = ("regnetx_400mf_tv", "regnety_400mf")
FAST_HF = ("regnetx_200mf", "regnety_200mf")
TORCHVISION = [n for n, e in MODELS.items() if e.torchvision_name]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def assert_same_tensors(exported: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    back = convert_state_dict(exported)
    own = model.state_dict()
    assert back.keys() == own.keys()
    for k, v in own.items():
        assert torch.equal(back[k], v), k


def _slow_unless(name: str, fast: tuple[str, ...]):
    return pytest.param(name, marks=() if name in fast else pytest.mark.slow)


def test_torchvision_has_fifteen_registry_models():
    assert len(TORCHVISION) == 15 and set(FAST_TV) <= set(TORCHVISION)


@pytest.mark.parametrize("name", [_slow_unless(n, FAST_TV) for n in TORCHVISION])
def test_torchvision_export_loads_strictly_with_identical_outputs(name, randomize, tmp_path):
    import torchvision

    if MODELS[name].cfg.se_ratio and name in ("regnety_32gf", "regnety_128gf"):
        # 145M / 645M parameters: the random init without the last-BN zeroing (every layer counts), no BN
        # calibration; the smaller models (random BN statistics and affines) check the BN tensors' mapping
        ours = regnet_zoo.create(name, zero_init_last=False).eval()
    else:
        ours = randomize(regnet_zoo.create(name), seed=2)
    done = export_layout(ours, "torchvision", tmp_path / "w.safetensors")
    builder = MODELS[name].torchvision_name
    assert done.paths == (tmp_path / "w.safetensors",) and f"torchvision.models.{builder}(" in done.loader
    exported = load_file(done.paths[0])
    assert_same_tensors(exported, ours)
    with pytest.MonkeyPatch.context() as mp:  # the strict load below sets every tensor: no random init (10 s at 128gf)
        for init in ("kaiming_uniform_", "uniform_", "normal_", "ones_", "zeros_"):
            mp.setattr(torch.nn.init, init, lambda tensor, *args, **kwargs: tensor)
        ref = getattr(torchvision.models, builder)().eval()
    ref.load_state_dict(exported, strict=True)
    x = X[:1] if name == "regnety_128gf" else X  # 645M parameters: one image of the two
    with torch.no_grad():
        torch.testing.assert_close(ref(x), ours(x), **TOL)


@pytest.mark.slow
def test_torchvision_export_as_pth_and_state_dicts_of_any_layout(randomize, tmp_path):
    """A .pth file (plain tensors: torch.load(weights_only=True)); a torchvision state dict in, transformers out."""
    import torchvision
    from transformers import RegNetForImageClassification

    ours = randomize(regnet_zoo.create("regnety_400mf", num_classes=7), seed=3)
    done = export_layout(ours.state_dict(), "torchvision", tmp_path / "w.pth")  # a state dict: its registry model
    ref = torchvision.models.regnet_y_400mf(num_classes=7).eval()
    ref.load_state_dict(torch.load(done.paths[0], weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ref(X), ours(X), **TOL)
    export_layout(ref.state_dict(), "transformers", tmp_path / "hf")
    hf = RegNetForImageClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=X).logits, ref(X), **TOL)


@pytest.mark.parametrize("name", [_slow_unless(n, FAST_HF) for n in (
    "regnetx_200mf", "regnety_200mf", "regnetx_3.2gf", "regnetx_8.0gf", "regnety_4.0gf", "regnety_16gf")])
def test_transformers_export_is_a_folder_from_pretrained_loads(name, randomize, tmp_path):
    """config.json + model.safetensors; regnetx_8.0gf's first stage is narrower than its group width."""
    from transformers import RegNetForImageClassification

    ours = randomize(regnet_zoo.create(name, num_classes=10), seed=4)
    done = export_layout(ours, "transformers", tmp_path / "hf")
    assert {p.name for p in done.paths} == {"config.json", "model.safetensors"}
    ref = RegNetForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert ref.config.layer_type == ("y" if MODELS[name].cfg.se_ratio else "x") and ref.config.num_labels == 10
    exported = load_file(tmp_path / "hf" / "model.safetensors")
    assert set(exported) == set(ref.state_dict())  # strict: exactly the model's tensors
    assert_same_tensors(exported, ours)
    with torch.no_grad():
        torch.testing.assert_close(ref(pixel_values=X).logits, ours(X), **TOL)


@pytest.mark.slow
def test_transformers_layout_fits_every_registry_model():
    """Every RegNetX/Y registry model's export loads strictly into transformers' model (built on 'meta':
    names and shapes); RegNetZ (inverted bottleneck, SiLU) has no transformers twin and says so."""
    from transformers import RegNetForImageClassification

    for name, entry in MODELS.items():
        with torch.device("meta"):
            ours = regnet_zoo.create(name)
            if entry.cfg.block == "z":
                with pytest.raises(ExportError):
                    transformers_config(ours)
                continue
            theirs = RegNetForImageClassification(transformers_config(ours))
        theirs.load_state_dict(to_transformers(ours.state_dict()), strict=True, assign=True)


def test_transformers_export_of_a_custom_config_headless_and_one_channel(randomize, tmp_path):
    """transformers' config expresses any X/Y config (here one not in the registry), no head, 1 input channel."""
    from transformers import RegNetModel

    cfg = {"type": "regnet", "depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8, "se_ratio": 0.25}
    ours = randomize(regnet_zoo.create(cfg, num_classes=0, in_chans=1), seed=5)
    export_layout(ours, "transformers", tmp_path / "hf")
    ref = RegNetModel.from_pretrained(tmp_path / "hf").eval()  # the trunk of the classification folder
    x = X[:, :1]
    with torch.no_grad():
        torch.testing.assert_close(ref(pixel_values=x).pooler_output.flatten(1), ours(x), **TOL)
    with pytest.raises(ExportError, match="torchvision"):
        export_layout(ours, "torchvision", tmp_path / "tv.safetensors")  # 1 channel, no classifier


def test_what_the_targets_cannot_build_is_a_clear_error(tmp_path):
    custom = regnet_zoo.create({"type": "regnet", "depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8})
    with pytest.raises(ExportError, match="torchvision has no regnet_\\* model"):
        export_layout(custom, "torchvision", tmp_path / "a.safetensors")
    cases = [
        (regnet_zoo.create("regnety_400mf", output_stride=16), "no dilation"),
        (regnet_zoo.create("regnety_400mf", global_pool="max"), "global average"),
        (regnet_zoo.create({"stages": [{"depth": 1, "width": 32, "group_width": 8, "bot_mul": 0.5},
                                       {"depth": 1, "width": 64, "group_width": 8, "bot_mul": 0.5}]}),
         "bottleneck multiplier 1"),
        (regnet_zoo.create({"stages": [{"depth": 1, "width": 32, "group_width": 8, "stride": 1}]}), "strides by 2"),
        (regnet_zoo.create({"type": "regnet", "depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8,
                            "se_ratio": 0.5}), "se_ratio 0.25"),
    ]
    from timm.layers.activations import Swish

    for act in (torch.nn.SiLU(), Swish()):  # RegNetZ's activation, torch's or timm's
        silu = regnet_zoo.create("regnety_200mf")
        silu.s1.b1.act3 = act
        cases.append((silu, "uses ReLU"))
    for model, rule in cases:
        for to in ("torchvision", "transformers"):
            if rule == "se_ratio 0.25" and to == "torchvision":
                continue  # not a torchvision model either, but for its widths
            out = tmp_path / ("x.safetensors" if to == "torchvision" else "hf")
            with pytest.raises(ExportError, match=rule):
                export_layout(model, to, out)
    for to, out in (("torchvision", tmp_path / "z.safetensors"), ("transformers", tmp_path / "z")):
        with pytest.raises(ExportError):  # RegNetZ: another block, activation and head
            export_layout(regnet_zoo.create("regnetz_500mf"), to, out)
    assert not list(tmp_path.iterdir())  # nothing written
    feats = regnet_zoo.create("regnety_200mf", features_only=True)
    with pytest.raises(ExportError, match="features_only"):
        export_layout(feats, "transformers", tmp_path / "hf")
    with pytest.raises(ValueError, match="to must be one of"):
        export_layout(silu, "onnx", tmp_path / "x")
    with pytest.raises(ValueError, match=".safetensors"):
        export_layout(regnet_zoo.create("regnety_400mf"), "torchvision", tmp_path / "folder")
    with pytest.raises(ExportError, match="match no registry model"):
        export_layout(custom.state_dict(), "transformers", tmp_path / "hf")


def test_cli_convert_to_torchvision_and_transformers(randomize, tmp_path, capsys):
    import torchvision
    from transformers import RegNetForImageClassification

    from regnet_zoo.cli import main

    ours = randomize(regnet_zoo.create("regnety_400mf"), seed=5).eval()
    regnet_zoo.save_pretrained(ours, tmp_path / "src", model_card=False)
    src = str(tmp_path / "src" / "model.safetensors")
    assert main(["convert", src, str(tmp_path / "tv.safetensors"), "--to", "torchvision"]) == 0
    tv = torchvision.models.regnet_y_400mf()
    tv.load_state_dict(load_file(tmp_path / "tv.safetensors"), strict=True)
    assert main(["convert", src, str(tmp_path / "hf"), "--to", "transformers"]) == 0
    hf = RegNetForImageClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(X), ours(X), **TOL)
        torch.testing.assert_close(hf(pixel_values=X).logits, ours(X), **TOL)
    assert "load with" in capsys.readouterr().out
    assert main(["convert", src, str(tmp_path / "hf.safetensors"), "--to", "transformers"]) == 1  # needs a folder
