"""regnet-zoo download / convert / push / eval against the local Hub."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import regnet_zoo
from regnet_zoo.cli import main

# huggingface_hub's LFS upload passes a file object to httpx, which warns; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_download_then_offline(hub, pycls_weights, capsys, monkeypatch):
    ref, repo_id = pycls_weights
    code, out, err = run(capsys, "download", "RegNetX-200MF", "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    data = hub.files(repo_id)["model.safetensors"]
    assert row["name"] == "regnetx_200mf.pycls_in1k" and row["bytes"] == len(data)
    assert row["path"].startswith(str(hub_cache(monkeypatch)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = regnet_zoo.create("regnetx_200mf", pretrained=True).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=0, atol=0)


def hub_cache(monkeypatch):
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def test_download_errors_and_hf_hub_repos(hub, pycls_weights, capsys):
    code, out, err = run(capsys, "download", "regnetx_200mf.tv2_in1k")
    assert code == 1 and "no such weights: regnetx_200mf.tv2_in1k" in err and "pycls_in1k (default)" in err
    code, out, err = run(capsys, "download", "regnetx_201mf")
    assert code == 1 and "unknown model 'regnetx_201mf'" in err
    code, out, err = run(capsys, "download", f"hf-hub:{pycls_weights[1]}")
    assert code == 0 and "config.json" in out and "model.safetensors" in out


def test_convert_torchvision_and_pycls(tmp_path, randomize, capsys):
    import torchvision

    ref = randomize(torchvision.models.regnet_y_400mf(), seed=12)
    torch.save(ref.state_dict(), tmp_path / "tv.pth")
    code, out, err = run(capsys, "convert", "--from", "torchvision", str(tmp_path / "tv.pth"),
                         str(tmp_path / "y400.safetensors"))
    assert code == 0, err
    assert "checked against regnety_400mf" in out
    model = regnet_zoo.create("regnety_400mf", pretrained=str(tmp_path / "y400.safetensors")).eval()
    torch.testing.assert_close(model(X), ref(X), rtol=1e-5, atol=1e-5)
    # to a folder: a complete save_pretrained folder
    code, out, err = run(capsys, "convert", str(tmp_path / "tv.pth"), str(tmp_path / "y400"))
    assert code == 0, err
    back = regnet_zoo.from_pretrained(tmp_path / "y400").eval()
    torch.testing.assert_close(back(X), ref(X), rtol=1e-5, atol=1e-5)
    # the widths of torchvision's regnet_x_400mf are not the paper's RegNetX-400MF
    torch.save(torchvision.models.regnet_x_400mf().state_dict(), tmp_path / "x400.pth")
    code, out, err = run(capsys, "convert", str(tmp_path / "x400.pth"), str(tmp_path / "x.safetensors"),
                         "--model", "regnetx_400mf")
    assert code == 1 and "shape mismatches" in err
    code, out, err = run(capsys, "convert", "--from", "pycls", str(tmp_path / "x400.pth"), str(tmp_path / "x"))
    assert code == 1 and "but its keys are torchvision's" in err


def test_push_from_name_folder_and_file(hub, pycls_weights, tmp_path, randomize, capsys):
    ref, _ = pycls_weights
    code, out, err = run(capsys, "push", "regnetx_200mf.pycls_in1k", "me/cli-x200", "--metrics", "top1=68.9",
                         "top5=88.6")
    assert code == 0, err
    assert "me/cli-x200/commit/" in out
    card = hub.files("me/cli-x200")["README.md"].decode()
    assert "value: 68.9" in card and "value: 88.6" in card
    torch.testing.assert_close(regnet_zoo.create("hf-hub:me/cli-x200", pretrained=True).eval()(X), ref(X),
                               rtol=0, atol=0)
    other = randomize(regnet_zoo.create("regnety_200mf", num_classes=4), seed=13)
    regnet_zoo.save_pretrained(other, tmp_path / "run")
    for source, repo in ((tmp_path / "run", "me/cli-folder"), (tmp_path / "run" / "model.safetensors", "me/cli-file")):
        code, out, err = run(capsys, "push", str(source), repo)
        assert code == 0, err
        back = regnet_zoo.create(f"hf-hub:{repo}", pretrained=True).eval()
        assert back.num_classes == 4
        torch.testing.assert_close(back(X), other(X), rtol=0, atol=0)
    with pytest.raises(SystemExit):
        main(["push", "regnetx_200mf", "me/x", "--metrics", "top1"])


def eval_transform(interpolation=None):
    """The paper's evaluation written with torchvision transforms v2: shorter side to 256, centre 224."""
    from torchvision.transforms import v2

    interpolation = interpolation or v2.InterpolationMode.BILINEAR
    return v2.Compose([v2.Resize(256, interpolation=interpolation), v2.CenterCrop(224), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def make_folder(model, root, images: int = 12):
    """An ImageNet-style folder built around ``model``'s own predictions, with the expected top-1/top-5.

    Predictions come from PIL images and ``eval_transform`` (independent of the CLI and of timm).
    Images 0-3 get their top-1 class as label (top-1 and top-5 right), 4-7 their 5th (top-5 right,
    just), 8-11 their 6th (top-5 wrong, just). Returns (per-image ordered top-5, top-1 %, top-5 %).
    """
    from timm.data import ImageNetInfo

    rng = np.random.default_rng(0)
    synsets = ImageNetInfo().label_names()
    tops = {}
    for i in range(images):
        h, w = (300, 260) if i % 2 else (250, 320)
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        arr[: h // 2, :, i % 3] = 255  # some structure
        img = Image.fromarray(arr)
        with torch.no_grad():
            top = model(eval_transform()(img)[None]).topk(6).indices[0].tolist()
        label = top[0] if i < 4 else top[4] if i < 8 else top[5]
        (root / synsets[label]).mkdir(parents=True, exist_ok=True)
        img.save(root / synsets[label] / f"img{i:02d}.png")
        tops[f"img{i:02d}.png"] = top[:5]
    return tops, 100 * 4 / images, 100 * 8 / images


def test_eval_reports_accuracy_with_the_manifest_preprocessing(hub, pycls_weights, tmp_path, capsys):
    from torchvision.transforms import v2

    ref, _ = pycls_weights
    tops, top1, top5 = make_folder(ref, tmp_path / "val")
    # the check has power: another interpolation already changes some top-5 lists
    bicubic = {}
    for path in (tmp_path / "val").rglob("*.png"):
        with torch.no_grad():
            x = eval_transform(v2.InterpolationMode.BICUBIC)(Image.open(path).convert("RGB"))[None]
            bicubic[path.name] = ref(x).topk(5).indices[0].tolist()
    assert bicubic != tops
    code, out, err = run(capsys, "eval", "regnetx_200mf", "--data", str(tmp_path / "val"), "--json",
                         "--batch-size", "5", "--workers", "0", "--results-file", str(tmp_path / "preds.csv"))
    assert code == 0, err
    res = json.loads(out)
    assert res["images"] == 12 and res["model"] == "regnetx_200mf.pycls_in1k"
    rows = {r["path"].rsplit("/", 1)[-1]: [int(c) for c in r["top5"].split()]
            for r in csv.DictReader(open(tmp_path / "preds.csv"))}
    assert rows == tops  # the CLI preprocessed exactly as the manifest says (bilinear, 256 -> 224)
    assert res["top1"] == pytest.approx(top1) and res["top5"] == pytest.approx(top5)
    assert res["preprocessing"]["interpolation"] == "bilinear" and res["preprocessing"]["crop_pct"] == 0.875
    (pycls,) = [r for r in res["reported"] if r["by"] == "pycls"]
    assert pycls["top1"] == 68.912 and pycls["diff_top1"] == pytest.approx(top1 - 68.912)
    # text output, and --limit takes images spread over the folder
    code, out, err = run(capsys, "eval", "regnetx_200mf.pycls_in1k", "--data", str(tmp_path / "val"),
                         "--limit", "4", "--workers", "0")
    assert code == 0, err
    assert "4 images" in out and "reported by pycls: top-1 68.912" in out and "note: the reported numbers" in out


def test_eval_own_weights_on_a_custom_folder(tmp_path, randomize, capsys):
    model = randomize(regnet_zoo.create("regnetx_200mf", num_classes=3), seed=14)
    regnet_zoo.save_pretrained(model, tmp_path / "run")
    for c in ("cat", "dog", "emu"):
        (tmp_path / "data" / c).mkdir(parents=True)
        Image.fromarray(np.full((40, 50, 3), 100, np.uint8)).save(tmp_path / "data" / c / "a.png")
    code, out, err = run(capsys, "eval", "regnetx_200mf", "--weights", str(tmp_path / "run"), "--data",
                         str(tmp_path / "data"), "--workers", "0", "--json", "--input-size", "64")
    assert code == 0, err
    res = json.loads(out)
    # the three images are identical, so one prediction: exactly one of them is right; top-3 covers all
    assert res["top1"] == pytest.approx(100 / 3) and res["top5"] == 100 and res["reported"] == []
    assert res["preprocessing"]["input_size"] == [3, 64, 64]
    (tmp_path / "data" / "fox").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "data" / "fox" / "b.png")
    code, out, err = run(capsys, "eval", "regnetx_200mf", "--weights", str(tmp_path / "run"), "--data",
                         str(tmp_path / "data"), "--workers", "0")
    assert code == 1 and "4 class folders" in err and "the model has 3 classes" in err


def resize_crop(size: int, crop_pct: float):
    """timm's eval preprocessing written with torchvision transforms v2: shorter side to size / crop_pct, centre
    crop, ImageNet normalisation (bilinear)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(int(size / crop_pct), interpolation=v2.InterpolationMode.BILINEAR),
                       v2.CenterCrop(size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def test_eval_test_size_uses_the_weights_test_input_size(tmp_path, randomize, capsys):
    model = randomize(regnet_zoo.create("regnetx_200mf", num_classes=3), seed=15)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "crop_pct": 0.875,
                            "interpolation": "bilinear", "test_input_size": (3, 96, 96), "test_crop_pct": 1.0}
    regnet_zoo.save_pretrained(model, tmp_path / "run", license="mit")
    rng = np.random.default_rng(1)
    for i in range(6):
        (tmp_path / "data" / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((70 + 9 * i, 110, 3)) * 255).astype(np.uint8)).save(
            tmp_path / "data" / f"c{i % 3}" / f"{i}.png")
    args = ("eval", "regnetx_200mf", "--weights", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
            "--workers", "0", "--json")
    for extra, size, crop in (((), 64, 0.875), (("--test-size",), 96, 1.0)):
        code, out, err = run(capsys, *args, *extra, "--results-file", str(tmp_path / "preds.csv"))
        assert code == 0, err
        res = json.loads(out)
        assert res["preprocessing"]["input_size"] == [3, size, size] and res["preprocessing"]["crop_pct"] == crop
        assert res["test_size"] is bool(extra)
        # the predictions are those of the model on images preprocessed independently at that size
        with torch.no_grad():
            expected = {p.name: model(resize_crop(size, crop)(Image.open(p).convert("RGB"))[None]).topk(3)
                        .indices[0].tolist() for p in (tmp_path / "data").rglob("*.png")}
        rows = {r["path"].rsplit("/", 1)[-1]: [int(c) for c in r["top5"].split()]
                for r in csv.DictReader(open(tmp_path / "preds.csv"))}
        assert rows == expected
    # an explicit --input-size wins over --test-size (timm's precedence)
    code, out, err = run(capsys, *args, "--test-size", "--input-size", "80")
    assert code == 0, err
    assert json.loads(out)["preprocessing"]["input_size"] == [3, 80, 80]


def test_eval_test_size_without_a_test_size_falls_back_like_timm(tmp_path, randomize, capsys):
    model = randomize(regnet_zoo.create("regnetx_200mf", num_classes=2), seed=16)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 64), "crop_pct": 0.875}
    regnet_zoo.save_pretrained(model, tmp_path / "run", license="mit")
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(tmp_path / "data" / c / "x.png")
    args = ("eval", "regnetx_200mf", "--weights", str(tmp_path / "run"), "--data", str(tmp_path / "data"),
            "--workers", "0", "--test-size")
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["preprocessing"]["input_size"] == [3, 64, 64] and res["preprocessing"]["crop_pct"] == 0.875
    assert res["test_size"] is False
    code, out, err = run(capsys, *args)
    assert code == 0 and "test_input_size" in out  # the text output says the test size was not there


def test_eval_test_size_of_a_published_tag(tmp_path, capsys):
    from safetensors.torch import save_file
    from timm.data import ImageNetInfo

    from regnet_zoo.weights.manifest import load_manifest

    tag = load_manifest().get("regnety_3.2gf", "ra_in1k").pretrained_cfg()  # timm's: 224 / 0.95, test 288 / 1.0
    assert tag["test_input_size"] == (3, 288, 288) and tag["input_size"] == (3, 224, 224)
    model = regnet_zoo.create("regnety_3.2gf")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "y32.safetensors"))
    for synset in ImageNetInfo().label_names()[:2]:
        (tmp_path / "val" / synset).mkdir(parents=True)
        Image.fromarray(np.full((300, 320, 3), 120, np.uint8)).save(tmp_path / "val" / synset / "x.png")
    args = ("eval", "regnety_3.2gf", "--tag", "ra_in1k", "--weights", str(tmp_path / "y32.safetensors"), "--data",
            str(tmp_path / "val"), "--workers", "0", "--json")
    for extra, size, crop in (((), 224, tag["crop_pct"]), (("--test-size",), 288, tag["test_crop_pct"])):
        code, out, err = run(capsys, *args, *extra)
        assert code == 0, err
        res = json.loads(out)
        assert res["preprocessing"]["input_size"] == [3, size, size] and res["preprocessing"]["crop_pct"] == crop
        assert res["model"] == "regnety_3.2gf.ra_in1k" and res["images"] == 2


def test_missing_files_and_folders_are_named(hub, capsys, tmp_path):
    code, out, err = run(capsys, "eval", "regnetx_200mf", "--weights", str(tmp_path / "nonexist.safetensors"),
                         "--data", str(tmp_path))
    assert code == 1 and f"file not found: {tmp_path / 'nonexist.safetensors'}" in err and "unknown model" not in err
    code, out, err = run(capsys, "push", "missing.pth", "me/x")
    assert code == 1 and "file not found: missing.pth" in err
    # the data folder is checked before the weights are fetched (which may be gigabytes)
    code, out, err = run(capsys, "eval", "regnety_32gf", "--data", str(tmp_path / "no_val"))
    assert code == 1 and f"data folder not found: {tmp_path / 'no_val'}" in err
    assert hub.requests == []


def test_hub_refusal_is_a_clean_cli_error(hub, pycls_weights, capsys):
    hub.fail[f"/{pycls_weights[1]}/resolve/"] = 403
    code, out, err = run(capsys, "download", "regnetx_200mf")
    assert code == 1 and err.startswith("regnet-zoo download: ") and "HTTP 403" in err and "Traceback" not in err
