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


def test_model_card_metadata_and_complexity(tmp_path, caplog):
    model = regnet_zoo.create("regnety_400mf")
    with caplog.at_level("WARNING", logger="regnet_zoo.weights.publish"):
        out = regnet_zoo.save_pretrained(model, tmp_path, metrics={"top1": 74.0, "top5": 91.7}, repo_id="me/y400")
    assert "licence of these weights is unknown" in caplog.text
    card = ModelCard.load(out / "README.md")
    meta = card.data.to_dict()
    # weights of unknown origin: no licence or dataset is claimed for them
    assert meta["library_name"] == "timm" and meta["license"] == "other" and "datasets" not in meta
    assert {"regnet", "image-classification"} <= set(meta["tags"])
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"Top-1 accuracy": 74.0, "Top-5 accuracy": 91.7}
    assert all(r.dataset_type == "unknown" for r in card.data.eval_results)
    assert "Training data:** unknown" in card.text and "origin not recorded" in card.text
    cx = regnet_zoo.complexity("regnety_400mf")  # 224 px, the paper's counting
    assert f"({cx['flops']:,})" in card.text and f"({cx['params']:,})" in card.text
    assert 'regnet_zoo.create("hf-hub:me/y400", pretrained=True)' in card.text
    assert "| s1 | 1 | 48 | 8 | 6 | 1 |" in card.text  # RegNetY-400MF stage 1: d=1, w=48, g=8


@pytest.mark.parametrize("name, tag, license, datasets", [
    ("regnety_400mf", "pycls_in1k", "mit", ["imagenet-1k"]),
    ("regnety_16gf", "swag_ft_in1k", "cc-by-nc-4.0", ["instagram-3.6b", "imagenet-1k"]),
    ("regnety_16gf", "sw_in12k_ft_in1k", "apache-2.0", ["imagenet-12k", "imagenet-1k"]),
])
def test_model_card_of_published_weights_takes_licence_and_data_from_the_manifest(name, tag, license, datasets):
    from regnet_zoo.weights.manifest import load_manifest
    from regnet_zoo.weights.publish import model_card_text

    w = load_manifest().get(name, tag)
    model = regnet_zoo.create(name, device="meta")  # the card needs the architecture, not the numbers
    model.pretrained_cfg = {**model.pretrained_cfg, **w.pretrained_cfg()}  # as pretrained=tag leaves it
    card = ModelCard(model_card_text(model, metrics={"top1": 80.0}))
    assert (card.data.license, card.data.datasets) == (license, datasets)
    assert card.data.eval_results[0].dataset_type == "imagenet-1k"  # the classifier's label space
    assert f"{name}.{tag} (from timm/" in card.text
    # fine-tuned to another class count: the published head (and its label space) is gone
    model.reset_classifier(10)
    card = ModelCard(model_card_text(model))
    assert card.data.license == license and card.data.datasets is None
    assert f"derived from tag {tag}" in card.text


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


def test_from_pretrained_says_which_folder_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for spelling in ("./nope", "nope/", "runs/x/y", tmp_path / "nope"):
        with pytest.raises(regnet_zoo.weights.WeightsError, match="folder .*nope.* does not exist|folder runs/x/y"):
            regnet_zoo.from_pretrained(spelling)
    (tmp_path / "w.safetensors").write_bytes(b"")
    with pytest.raises(regnet_zoo.weights.WeightsError, match="is a file; from_pretrained takes a folder"):
        regnet_zoo.from_pretrained("w.safetensors")


def test_one_channel_model_round_trips(tmp_path, hub, randomize):
    """in_chans comes from the saved config.json (timm's model_args), for folders, Hub repos and timm."""
    model = randomize(regnet_zoo.create("regnetx_200mf", in_chans=1, num_classes=5), seed=15).eval()
    x1 = X[:, :1]
    regnet_zoo.save_pretrained(model, tmp_path / "gray")
    assert json.loads((tmp_path / "gray" / "config.json").read_text())["model_args"]["in_chans"] == 1
    regnet_zoo.push_to_hub(model, "me/gray-x200")
    for back in (regnet_zoo.from_pretrained(tmp_path / "gray"), regnet_zoo.create("hf-hub:me/gray-x200"),
                 timm.create_model("hf-hub:me/gray-x200", pretrained=True)):
        assert back.stem.conv.in_channels == 1
        torch.testing.assert_close(back.eval()(x1), model(x1), rtol=0, atol=0)
    three = regnet_zoo.create("hf-hub:me/gray-x200", pretrained=False, in_chans=3)  # an explicit argument wins
    assert three.stem.conv.in_channels == 3
    feats = regnet_zoo.from_pretrained(tmp_path / "gray", features_only=True, out_indices=(2,)).eval()
    torch.testing.assert_close(feats(x1)[0], model.forward_intermediates(x1, indices=[2], intermediates_only=True)[0],
                               rtol=0, atol=0)


@pytest.mark.parametrize("status, words", [(403, "log in with a token"), (429, "too many requests"),
                                           (503, "server error")])
def test_hub_refusals_on_push_are_weights_errors(hub, status, words, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # huggingface_hub backs off on 429/5xx
    hub.fail["/api/repos/create"] = status
    with pytest.raises(regnet_zoo.weights.WeightsHubError) as err:
        regnet_zoo.push_to_hub(regnet_zoo.create("regnetx_200mf"), "me/refused")
    assert err.value.status == status
    assert f"HTTP {status} for 'me/refused'" in str(err.value) and words in str(err.value)


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
