"""Converters: state dicts of the paper's pycls, torchvision, transformers, VISSL and timm give identical outputs.

References are the real libraries' models (pycls 0.1.1 from PyPI, the code that wrote the paper's
checkpoints; torchvision; transformers; timm), with every weight and BN statistic random.
"""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
import torch
from pycls.models import anynet  # pinned test dependency: the paper's code

import regnet_zoo
from regnet_zoo.weights import WeightsError, WeightsMismatchError
from regnet_zoo.weights.convert import convert_state_dict, detect_format

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def pycls_model(name: str, randomize):
    """The paper code's AnyNet for registry model ``name`` (same stages), random weights."""
    arch = regnet_zoo.get_entry(name).cfg.to_anynet()
    net = anynet.AnyNet(stem_type="simple_stem_in", stem_w=arch.stem_width, block_type="res_bottleneck_block",
                        ds=arch.depths, ws=arch.widths, ss=arch.strides, bms=arch.bot_muls, gws=arch.group_widths,
                        se_r=arch.se_ratio or None, nc=1000)
    return randomize(net, seed=3)


def save_pycls_checkpoint(net, path, **extra) -> None:
    """A checkpoint as pycls' save_checkpoint writes it."""
    torch.save({"epoch": 99, "model_state": net.state_dict(), "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "MODEL:\n  TYPE: regnet\n", **extra}, path)


@pytest.mark.parametrize("name", ["regnetx_200mf", "regnety_200mf"])
def test_pycls_checkpoint_on_bgr_equals_converted_on_rgb(name, randomize, tmp_path):
    ref = pycls_model(name, randomize)
    path = tmp_path / "model.pyth"
    save_pycls_checkpoint(ref, path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert detect_format(ckpt) == "pycls"
    ours = regnet_zoo.create(name).eval()
    ours.load_state_dict(convert_state_dict(ckpt, "pycls"))
    bgr = X.flip(1)  # pycls reads images with OpenCV: channel 0 is blue
    torch.testing.assert_close(ours(X), ref(bgr), rtol=1e-5, atol=1e-5)
    # the same through create(pretrained=path): detected, converted, loaded
    via_path = regnet_zoo.create(name, pretrained=str(path)).eval()
    torch.testing.assert_close(via_path(X), ref(bgr), rtol=1e-5, atol=1e-5)


def test_pycls_picks_the_better_of_model_and_ema_state(randomize, tmp_path):
    worse, better = pycls_model("regnetx_200mf", randomize), randomize(pycls_model("regnetx_200mf", randomize), 7)
    path = tmp_path / "ema.pyth"
    save_pycls_checkpoint(worse, path, ema_state=better.state_dict(), test_err=30.0, ema_err=29.0)
    ours = regnet_zoo.create("regnetx_200mf", pretrained=str(path)).eval()
    torch.testing.assert_close(ours(X), better(X.flip(1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tv_name, ours_name", [("regnet_x_400mf", "regnetx_400mf_tv"),
                                                 ("regnet_y_400mf", "regnety_400mf")])
def test_torchvision_state_dict(tv_name, ours_name, randomize):
    import torchvision

    ref = randomize(getattr(torchvision.models, tv_name)(), seed=4)
    sd = ref.state_dict()
    assert detect_format(sd) == "torchvision"
    ours = regnet_zoo.create(ours_name).eval()
    ours.load_state_dict(convert_state_dict(sd, "torchvision"))
    torch.testing.assert_close(ours(X), ref(X), rtol=1e-5, atol=1e-5)


def test_torchvision_widths_differ_from_the_papers_model(randomize):
    import torchvision

    sd = convert_state_dict(torchvision.models.regnet_x_400mf().state_dict())
    with pytest.raises(WeightsMismatchError, match="shape mismatches: s"):
        regnet_zoo.weights.load_into(regnet_zoo.create("regnetx_400mf"), sd, "torchvision regnet_x_400mf")


@pytest.mark.parametrize("name", ["regnetx_200mf", "regnety_200mf"])
def test_transformers_state_dict(name, randomize):
    from transformers import RegNetConfig, RegNetForImageClassification

    arch = regnet_zoo.get_entry(name).cfg.to_anynet()
    assert len(set(arch.group_widths)) == 1  # transformers has one group width for all stages
    config = RegNetConfig(embedding_size=arch.stem_width, hidden_sizes=arch.widths, depths=arch.depths,
                          groups_width=arch.group_widths[0], layer_type="y" if arch.se_ratio else "x",
                          hidden_act="relu", num_labels=10)
    ref = randomize(RegNetForImageClassification(config), seed=5)
    sd = ref.state_dict()
    assert detect_format(sd) == "transformers"
    ours = regnet_zoo.create(name, num_classes=10).eval()
    ours.load_state_dict(convert_state_dict(sd, "transformers"))
    with torch.no_grad():
        torch.testing.assert_close(ours(X), ref(pixel_values=X).logits, rtol=1e-5, atol=1e-5)
    # RegNetModel (no "regnet." prefix, no classifier): the trunk
    trunk = {k.removeprefix("regnet."): v for k, v in sd.items() if k.startswith("regnet.")}
    ours_trunk = regnet_zoo.create(name, num_classes=0).eval()
    ours_trunk.load_state_dict(convert_state_dict(trunk, "transformers"))
    torch.testing.assert_close(ours_trunk.forward_features(X), ours.forward_features(X), rtol=0, atol=0)


def test_timm_is_identity_and_wrappers_are_removed(randomize):
    import timm

    ref = randomize(timm.create_model("regnety_002"), seed=6)
    sd = ref.state_dict()
    assert convert_state_dict(sd, "timm").keys() == sd.keys()
    # a Lightning checkpoint: tensors under "model." next to others (a loss buffer), wrapped in "state_dict"
    ckpt = {"epoch": 3, "state_dict": {**{f"model.{k}": v for k, v in sd.items()}, "criterion.weight": torch.ones(3)}}
    ours = regnet_zoo.create("regnety_200mf").eval()
    ours.load_state_dict(convert_state_dict(ckpt))
    torch.testing.assert_close(ours(X), ref(X), rtol=0, atol=0)
    ddp = {"state_dict": {f"module.{k}": v for k, v in sd.items()}}
    assert convert_state_dict(ddp).keys() == sd.keys()


# ours -> ClassyVision's RegNet module names (classy_vision/models/anynet.py: ResBottleneckBlock's proj / bn and
# BottleneckTransform's a, b, se.excitation, c, final_bn), under VISSL's trunk names
_TO_CLASSY = {"conv1.conv": "f.a.0", "conv1.bn": "f.a.1", "conv2.conv": "f.b.0", "conv2.bn": "f.b.1",
              "se.fc1": "f.se.excitation.0", "se.fc2": "f.se.excitation.2", "conv3.conv": "f.c",
              "conv3.bn": "f.final_bn", "downsample.conv": "proj", "downsample.bn": "bn"}


def vissl_checkpoint(model, ssl_heads: bool = False) -> dict:
    """``model``'s weights as a VISSL checkpoint: trunk ``_feature_blocks.res{i+1}.block{i}-{j}``, heads ``0.clf.0``.

    ``ssl_heads`` adds a SwAV projection head and prototypes (pre-training only, not part of the model).
    """
    trunk, heads = {}, {}
    for k, v in model.state_dict().items():
        module, param = k.rsplit(".", 1)
        if module == "head.fc":
            heads[f"0.clf.0.{param}"] = v
            continue
        m = re.match(r"^s(\d+)\.b(\d+)\.(.+)$", module)
        if m:
            trunk[f"_feature_blocks.res{int(m[1]) + 1}.block{m[1]}-{int(m[2]) - 1}.{_TO_CLASSY[m[3]]}.{param}"] = v
        else:
            trunk[f"_feature_blocks.conv1.stem.{ {'stem.conv': 0, 'stem.bn': 1}[module]}.{param}"] = v
    if ssl_heads:
        heads.update({"0.projection_head.0.weight": torch.randn(16, model.num_features),
                      "0.projection_head.0.bias": torch.zeros(16), "0.prototypes0.weight": torch.randn(32, 16)})
    return {"type": "checkpoint", "phase_idx": 78, "iteration": 1000, "train_phase_idx": 38,
            "classy_state_dict": {"train": True, "loss": {}, "base_model": {
                "model": {"trunk": trunk, "heads": heads}, "meta": {"model": {}}}}}


@pytest.mark.parametrize("name, timm_name, num_classes, ssl_heads", [
    ("regnety_200mf", "regnety_002", 10, False),  # a fine-tuned checkpoint (seer_ft_in1k's layout)
    ("regnetx_200mf", "regnetx_002", 0, True),  # a SwAV pre-training trunk (seer's layout)
])
def test_vissl_checkpoint_converts_as_timms_filter_does(name, timm_name, num_classes, ssl_heads, randomize, tmp_path):
    import timm

    ref = randomize(regnet_zoo.create(name, num_classes=num_classes), seed=9)
    ckpt = vissl_checkpoint(ref, ssl_heads=ssl_heads)
    assert detect_format(ckpt) == "vissl"
    sd = convert_state_dict(ckpt, "vissl")
    ours = regnet_zoo.create(name, num_classes=num_classes).eval()
    ours.load_state_dict(sd)  # strict: every tensor named, SSL heads dropped
    torch.testing.assert_close(ours(X), ref(X), rtol=0, atol=0)
    path = tmp_path / "model_final_checkpoint_phase78.torch"  # VISSL saves .torch pickles
    torch.save(ckpt, path)
    via_path = regnet_zoo.create(name, num_classes=num_classes, pretrained=str(path)).eval()
    torch.testing.assert_close(via_path(X), ref(X), rtol=0, atol=0)
    # the independent reference: timm's own loader and regnet checkpoint filter on the same file
    theirs = timm.create_model(timm_name, pretrained=True, num_classes=num_classes,
                               pretrained_cfg_overlay={"file": str(path), "num_classes": num_classes}).state_dict()
    assert theirs.keys() == sd.keys()
    for k, v in theirs.items():
        assert torch.equal(v, sd[k]), k


def test_vissl_checkpoints_that_do_not_convert_are_clear_errors(randomize):
    ckpt = vissl_checkpoint(regnet_zoo.create("regnetx_200mf", num_classes=10))
    heads = ckpt["classy_state_dict"]["base_model"]["model"]["heads"]
    heads["0.channel_bn.weight"] = torch.ones(368)  # a linear-eval head with BN: not our classifier
    with pytest.raises(WeightsError, match="heads.0.channel_bn.weight"):
        convert_state_dict(ckpt)
    with pytest.raises(WeightsError, match="trunk"):
        convert_state_dict({"classy_state_dict": {"base_model": {"model": {"heads": {}}}}})


def test_wrong_or_unknown_format_is_a_clear_error(randomize):
    import torchvision

    sd = torchvision.models.regnet_y_400mf().state_dict()
    with pytest.raises(WeightsError, match="expected a pycls state dict, but its keys are torchvision's"):
        convert_state_dict(sd, "pycls")
    with pytest.raises(WeightsError, match="not a RegNet state dict of a known layout"):
        detect_format({"encoder.layer.0.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="format must be"):
        convert_state_dict(sd, "caffe")


def test_pycls_origin_downloads_the_papers_file_and_converts_it(hub, randomize, tmp_path, monkeypatch):
    """pretrained="pycls": the .pyth from the paper's URL (base overridden to the local server)."""
    ref = pycls_model("regnetx_200mf", randomize)
    save_pycls_checkpoint(ref, tmp_path / "x.pyth")
    hub.static["pycls/dds_baselines/160905981/RegNetX-200MF_dds_8gpu.pyth"] = (tmp_path / "x.pyth").read_bytes()
    monkeypatch.setenv("REGNET_ZOO_PYCLS_URL", f"{hub.url}/static/pycls")
    model = regnet_zoo.create("regnetx_200mf", pretrained="pycls").eval()
    torch.testing.assert_close(model(X), ref(X.flip(1)), rtol=1e-5, atol=1e-5)
    assert model.pretrained_cfg["url"].endswith("/static/pycls/dds_baselines/160905981/RegNetX-200MF_dds_8gpu.pyth")
    assert model.pretrained_cfg["interpolation"] == "bilinear"  # the pycls_in1k entry's preprocessing
    hub.requests.clear()
    regnet_zoo.create("regnetx_200mf", pretrained="pycls")  # cached in torch's hub folder
    assert hub.requests == []
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "RegNetX-200MF_dds_8gpu.pyth").is_file()
    with pytest.raises(regnet_zoo.weights.WeightsNotFoundError, match="answered 404"):
        regnet_zoo.create("regnetx_400mf", pretrained="pycls")


def test_origin_download_shows_progress_on_a_terminal_and_fails_fast_when_unreachable(
        hub, randomize, tmp_path, monkeypatch, silent_server, no_retry_waits):
    import io
    import sys
    import time

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    save_pycls_checkpoint(pycls_model("regnetx_200mf", randomize), tmp_path / "x.pyth")
    hub.static["pycls/dds_baselines/160905981/RegNetX-200MF_dds_8gpu.pyth"] = (tmp_path / "x.pyth").read_bytes()
    monkeypatch.setenv("REGNET_ZOO_PYCLS_URL", f"{hub.url}/static/pycls")
    for disable, cache in (("1", "quiet"), ("", "shown")):
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", disable)
        monkeypatch.setattr(sys, "stderr", Terminal())
        regnet_zoo.create("regnetx_200mf", pretrained="pycls", cache_dir=tmp_path / cache)
        assert ("100%" in sys.stderr.getvalue()) == (cache == "shown")  # tqdm's bar reached its end
    monkeypatch.setenv("REGNET_ZOO_PYCLS_URL", f"{silent_server}/pycls")
    start = time.perf_counter()
    with pytest.raises(regnet_zoo.weights.WeightsNotCachedError):
        regnet_zoo.create("regnetx_200mf", pretrained="pycls", cache_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 5  # urllib alone waits for the connection until the OS gives up


def test_torchvision_origin_checks_the_hash_in_the_file_name(hub, randomize, tmp_path, monkeypatch):
    import hashlib
    import json

    import torchvision

    from regnet_zoo.weights.manifest import manifest_path

    ref = randomize(torchvision.models.regnet_x_800mf(), seed=8)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    data = (tmp_path / "tv.pth").read_bytes()
    monkeypatch.setenv("REGNET_ZOO_TORCHVISION_URL", f"{hub.url}/static/tv")
    # under torchvision's real file name the bytes do not match the name's sha256 prefix
    hub.static["tv/regnet_x_800mf-94a99ebd.pth"] = data
    with pytest.raises(regnet_zoo.weights.WeightsVerificationError, match="94a99ebd"):
        regnet_zoo.create("regnetx_800mf", pretrained="torchvision")
    assert not list((tmp_path / "torch").rglob("*.pth"))
    # a manifest whose origin file name carries the right prefix
    prefix = hashlib.sha256(data).hexdigest()[:8]
    hub.static[f"tv/regnet_x_800mf-{prefix}.pth"] = data
    doc = json.loads(manifest_path().read_text())
    for w in doc["weights"]:
        if (w["model"], w["tag"]) == ("regnetx_800mf", "tv2_in1k"):
            w["origin"]["url"] = f"https://download.pytorch.org/models/regnet_x_800mf-{prefix}.pth"
    (tmp_path / "m.json").write_text(json.dumps(doc))
    monkeypatch.setenv("REGNET_ZOO_MANIFEST", str(tmp_path / "m.json"))
    model = regnet_zoo.create("regnetx_800mf", pretrained="torchvision").eval()
    torch.testing.assert_close(model(X), ref(X), rtol=1e-5, atol=1e-5)
    assert model.pretrained_cfg["crop_pct"] == 0.9655 and model.pretrained_cfg["tag"] == "tv2_in1k"


def test_torchvision_v1_tag_has_no_hub_copy_and_loads_torchvisions_file(hub, randomize, tmp_path, monkeypatch):
    """tv_in1k: torchvision's IMAGENET1K_V1 file (sha256 prefix in its name checked), converted; no Hub request."""
    import hashlib
    import json

    import torchvision

    from regnet_zoo.weights.manifest import manifest_path

    ref = randomize(torchvision.models.regnet_y_400mf(), seed=10)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    data = (tmp_path / "tv.pth").read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    hub.static[f"tv/regnet_y_400mf-{prefix}.pth"] = data
    monkeypatch.setenv("REGNET_ZOO_TORCHVISION_URL", f"{hub.url}/static/tv")
    doc = json.loads(manifest_path().read_text())
    (w,) = [w for w in doc["weights"] if (w["model"], w["tag"]) == ("regnety_400mf", "tv_in1k")]
    assert "hub" not in w and w["origin"]["url"] == "https://download.pytorch.org/models/regnet_y_400mf-c65dace8.pth"
    w["origin"]["url"] = f"https://download.pytorch.org/models/regnet_y_400mf-{prefix}.pth"
    (tmp_path / "m.json").write_text(json.dumps(doc))
    monkeypatch.setenv("REGNET_ZOO_MANIFEST", str(tmp_path / "m.json"))
    model = regnet_zoo.create("regnety_400mf", pretrained="tv_in1k").eval()
    torch.testing.assert_close(model(X), ref(X), rtol=1e-5, atol=1e-5)
    cfg = model.pretrained_cfg
    assert (cfg["tag"], cfg["license"], cfg["crop_pct"], cfg["interpolation"]) == ("tv_in1k", "bsd-3-clause", 0.875,
                                                                                 "bilinear")
    assert "hf_hub_id" not in cfg and [r[1] for r in hub.requests] == [f"/static/tv/regnet_y_400mf-{prefix}.pth"]
    from regnet_zoo.weights.manifest import load_manifest
    from regnet_zoo.weights.resolve import download_file

    path = download_file(load_manifest().get("regnety_400mf", "tv_in1k"))  # regnet-zoo download NAME.tv_in1k
    assert path.endswith(f"regnet_y_400mf-{prefix}.pth") and len(hub.requests) == 1  # the cached original


def test_pickle_that_is_not_plain_tensors_is_refused_without_unsafe_advice(tmp_path):
    import collections

    path = tmp_path / "model.pyth"
    torch.save({"model_state": {"w": torch.ones(1)}, "meta": collections.OrderedDict, "obj": Fraction(1, 3)}, path)
    with pytest.raises(WeightsError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=str(path))
    msg = str(err.value)
    assert str(path) in msg and "not a plain state dict or checkpoint" in msg and "Fraction" in msg
    assert "torch.load(weights_only=True)" in msg and ".safetensors" in msg
    assert "weights_only` set to `False`" not in msg and "will likely succeed" not in msg
    path.write_bytes(b"\x80\x02garbage" * 10)  # not even a pickle
    with pytest.raises(WeightsError, match="not a plain state dict or checkpoint \\(or it is corrupt\\)") as err:
        regnet_zoo.create("regnetx_200mf", pretrained=str(path))
    assert "False" not in str(err.value)


def test_original_file_names_carry_the_published_licence_and_preprocessing(randomize, tmp_path, capsys):
    """A file named as published (pycls / torchvision URL) gets its manifest entry; any other name does not."""
    from huggingface_hub import ModelCard

    from regnet_zoo.cli import main

    ref = pycls_model("regnetx_200mf", randomize)
    for name in ("RegNetX-200MF_dds_8gpu.pyth", "my_run.pyth"):
        save_pycls_checkpoint(ref, tmp_path / name)
    known = regnet_zoo.create("regnetx_200mf", pretrained=str(tmp_path / "RegNetX-200MF_dds_8gpu.pyth"))
    cfg = known.pretrained_cfg
    assert (cfg["tag"], cfg["license"], cfg["interpolation"], cfg["crop_pct"]) == ("pycls_in1k", "mit", "bilinear",
                                                                                 0.875)
    assert "hf_hub_id" not in cfg and cfg["origin_url"].endswith("/RegNetX-200MF_dds_8gpu.pyth")
    other = regnet_zoo.create("regnetx_200mf", pretrained=str(tmp_path / "my_run.pyth"))
    assert "tag" not in other.pretrained_cfg and "license" not in other.pretrained_cfg
    # convert to a folder: the model card's licence follows (unknown -> "other", or --license)
    assert main(["convert", str(tmp_path / "RegNetX-200MF_dds_8gpu.pyth"), str(tmp_path / "known")]) == 0
    assert main(["convert", str(tmp_path / "my_run.pyth"), str(tmp_path / "unknown")]) == 0
    assert main(["convert", str(tmp_path / "my_run.pyth"), str(tmp_path / "stated"), "--license", "apache-2.0"]) == 0
    capsys.readouterr()
    cards = {d: ModelCard.load(tmp_path / d / "README.md") for d in ("known", "unknown", "stated")}
    assert {d: c.data.license for d, c in cards.items()} == {"known": "mit", "unknown": "other",
                                                             "stated": "apache-2.0"}
    assert cards["known"].data.datasets == ["imagenet-1k"] and cards["unknown"].data.datasets is None
    known_text = cards["known"].text
    assert "regnetx_200mf.pycls_in1k" in known_text and "Designing Network Design Spaces" in known_text
    assert "origin not recorded" in cards["unknown"].text and "trained with regnet-zoo" not in cards["unknown"].text
    back = regnet_zoo.from_pretrained(tmp_path / "known").eval()
    torch.testing.assert_close(back(X), ref(X.flip(1)), rtol=1e-5, atol=1e-5)
