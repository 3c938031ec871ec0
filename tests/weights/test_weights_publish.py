"""save_pretrained / from_pretrained / push_to_hub, and timm loading what we publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, RegNetCfg, StageCfg

# huggingface_hub's LFS upload passes a file object to httpx, which warns; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
# a custom RegNet that timm can express (4 stages) and an AnyNet that it cannot
CUSTOM_REGNET = RegNetCfg(depth=8, w0=16, wa=12.0, wm=2.0, group_width=8, se_ratio=0.25)
CUSTOM_ANYNET = AnyNetCfg(stages=(StageCfg(1, 16, 8), StageCfg(2, 48, 8, bot_mul=0.5)), stem_width=16)


def test_save_and_load_a_folder(tmp_path, randomize):
    model = randomize(regnet_zoo.create("regnetx_200mf", num_classes=10), seed=2)
    out = regnet_zoo.save_pretrained(model, tmp_path / "run", metrics={"top1": 81.25, "top5": 95.5})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    back = regnet_zoo.from_pretrained(out).eval()
    torch.testing.assert_close(back(X), model(X), rtol=0, atol=0)
    config = json.loads((out / "config.json").read_text())
    assert (config["architecture"], config["num_classes"]) == ("regnetx_002", 10)
    assert config["regnet_zoo"]["model"] == "regnetx_200mf" and config["regnet_zoo"]["timm_compatible"]
    assert config["regnet_zoo"]["cfg"] == model.cfg.to_dict()
    # timm builds the same network from the folder on its own
    t = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    torch.testing.assert_close(t(X), model(X), rtol=0, atol=0)


def test_model_card_metadata_and_complexity(tmp_path):
    model = regnet_zoo.create("regnety_400mf")
    out = regnet_zoo.save_pretrained(model, tmp_path, metrics={"top1": 74.0, "top5": 91.7}, repo_id="me/y400")
    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "timm" and meta["license"] == "mit" and meta["datasets"] == ["imagenet-1k"]
    assert {"regnet", "image-classification"} <= set(meta["tags"])
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"Top-1 accuracy": 74.0, "Top-5 accuracy": 91.7}
    assert all(r.dataset_type == "imagenet-1k" for r in card.data.eval_results)
    cx = regnet_zoo.complexity("regnety_400mf")  # 224 px, the paper's counting
    assert f"({cx['flops']:,})" in card.text and f"({cx['params']:,})" in card.text
    assert 'regnet_zoo.create("hf-hub:me/y400", pretrained=True)' in card.text
    assert "| s1 | 1 | 48 | 8 | 6 | 1 |" in card.text  # RegNetY-400MF stage 1: d=1, w=48, g=8


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    model = regnet_zoo.create("regnetx_200mf")
    regnet_zoo.save_pretrained(model, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        regnet_zoo.save_pretrained(regnet_zoo.create("regnetx_200mf"), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_only_classifier_models_are_published(tmp_path):
    feats = regnet_zoo.create("regnetx_200mf", features_only=True)
    with pytest.raises(TypeError, match="expected a regnet_zoo model"):
        regnet_zoo.save_pretrained(feats, tmp_path)
    with pytest.raises(regnet_zoo.weights.WeightsError, match="has no config.json"):
        regnet_zoo.from_pretrained(tmp_path)


def test_push_then_fetch_with_regnet_zoo_and_timm(hub, randomize):
    model = randomize(regnet_zoo.create("regnety_200mf"), seed=9)
    info = regnet_zoo.push_to_hub(model, "me/regnety-200mf-test", metrics={"top1": 70.1})
    files = hub.files("me/regnety-200mf-test")
    assert info.oid == hub.repos["me/regnety-200mf-test"].branches["main"]
    assert {"model.safetensors", "config.json", "README.md", ".gitattributes"} == set(files)
    # the weights went through LFS: batch on the hub, PUT on the "CDN"
    assert [m for m, p, _ in hub.cdn_requests if p.startswith("/upload/")] == ["PUT"]
    assert hub.requests_for("/info/lfs/objects/batch")
    for load in (lambda: regnet_zoo.create("hf-hub:me/regnety-200mf-test", pretrained=True),
                 lambda: regnet_zoo.from_pretrained("me/regnety-200mf-test"),
                 lambda: timm.create_model("hf-hub:me/regnety-200mf-test", pretrained=True)):
        torch.testing.assert_close(load().eval()(X), model(X), rtol=0, atol=0)
    card = ModelCard(files["README.md"].decode())
    assert card.data.eval_results[0].metric_value == 70.1
    # pushing the same model again changes nothing: no new commit
    again = regnet_zoo.push_to_hub(model, "me/regnety-200mf-test", metrics={"top1": 70.1})
    assert again.oid == info.oid


def test_custom_regnet_round_trips_and_timm_loads_it(hub, randomize):
    model = randomize(regnet_zoo.create(CUSTOM_REGNET, num_classes=7), seed=10)
    assert len(model.arch.stages) == 4
    regnet_zoo.push_to_hub(model, "me/custom-regnet")
    config = json.loads(hub.files("me/custom-regnet")["config.json"])
    assert config["regnet_zoo"]["model"] is None and config["regnet_zoo"]["timm_compatible"]
    assert config["model_args"]["depth"] == 8 and config["model_args"]["group_size"] == 8
    back = regnet_zoo.create("hf-hub:me/custom-regnet", pretrained=True).eval()
    assert back.cfg == CUSTOM_REGNET and back.num_classes == 7
    torch.testing.assert_close(back(X), model(X), rtol=0, atol=0)
    t = timm.create_model("hf-hub:me/custom-regnet", pretrained=True).eval()
    torch.testing.assert_close(t(X), model(X), rtol=0, atol=0)


def test_custom_anynet_round_trips_through_regnet_zoo(hub, randomize):
    model = randomize(regnet_zoo.create(CUSTOM_ANYNET, num_classes=3), seed=11)
    regnet_zoo.push_to_hub(model, "me/custom-anynet", license="apache-2.0", datasets=["my-data"])
    files = hub.files("me/custom-anynet")
    config = json.loads(files["config.json"])
    assert config["architecture"] == "regnet_zoo_anynet" and not config["regnet_zoo"]["timm_compatible"]
    meta = ModelCard(files["README.md"].decode()).data
    assert (meta.library_name, meta.license, meta.datasets) == ("regnet-zoo", "apache-2.0", ["my-data"])
    back = regnet_zoo.create("hf-hub:me/custom-anynet", pretrained=True).eval()
    assert back.cfg == CUSTOM_ANYNET
    torch.testing.assert_close(back(X), model(X), rtol=0, atol=0)
    feats = regnet_zoo.create("hf-hub:me/custom-anynet", pretrained=True, features_only=True).eval()
    assert [f.shape[1] for f in feats(X)] == [16, 16, 48]


def test_republished_pretrained_weights_keep_their_preprocessing(hub, pycls_weights):
    model = regnet_zoo.create("regnetx_200mf", pretrained=True)
    regnet_zoo.push_to_hub(model, "me/x200-copy")
    config = json.loads(hub.files("me/x200-copy")["config.json"])
    pcfg = config["pretrained_cfg"]
    assert (pcfg["tag"], pcfg["interpolation"], pcfg["crop_pct"], pcfg["license"]) == (
        "pycls_in1k", "bilinear", 0.875, "mit")
    assert "hf_hub_id" not in pcfg  # the new repo is the source now
    assert config["regnet_zoo"]["weights_tag"] == "pycls_in1k"
    back = regnet_zoo.create("hf-hub:me/x200-copy", pretrained=True)
    assert back.pretrained_cfg["hf_hub_id"] == "me/x200-copy" and back.pretrained_cfg["interpolation"] == "bilinear"
