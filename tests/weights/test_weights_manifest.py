"""The weights manifest: schema, every entry, agreement with timm / torchvision / pycls, shipping."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from regnet_zoo.registry import MODELS, get_entry
from regnet_zoo.weights.manifest import ManifestError, load_manifest, manifest_path, parse_manifest, schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc():
    return json.loads(manifest_path().read_text(encoding="utf-8"))


def test_schema_is_valid_and_every_entry_satisfies_it(doc):
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    validator = jsonschema.Draft202012Validator(s)
    whole = dict(doc, weights=[])  # the top level alone (minItems aside) ...
    assert [e.message for e in validator.iter_errors(whole)] == ["[] should be non-empty"]
    entry_schema = {"$defs": s["$defs"], "$ref": "#/$defs/weights"}
    for w in doc["weights"]:  # ... and each entry on its own, for a precise report
        errors = [e.message for e in jsonschema.Draft202012Validator(entry_schema).iter_errors(w)]
        assert errors == [], f"{w['model']}.{w['tag']}: {errors}"


def test_loader_reads_every_entry(doc):
    m = load_manifest()
    assert len(m) == len(doc["weights"]) == 75
    assert {(e.model, e.tag) for e in m.entries} == {(w["model"], w["tag"]) for w in doc["weights"]}
    e = m.get("RegNetY-4.0GF")  # aliases work; the default comes first
    assert (e.model, e.tag, e.hub.repo_id) == ("regnety_4.0gf", "pycls_in1k", "timm/regnety_040.pycls_in1k")
    assert m.tags("regnety_040") == ["pycls_in1k", "ra3_in1k"]
    assert m.for_model("no_such_model") == []


def test_every_model_has_one_default_the_papers_weights_where_they_exist():
    m = load_manifest()
    for name, entry in MODELS.items():
        defaults = [e.tag for e in m.for_model(name) if e.default]
        expected = "pycls_in1k" if entry.paper else {"regnetx_400mf_tv": "tv2_in1k", "regnety_800mf_tv": "tv2_in1k",
                                                     "regnety_8.0gf_tv": "tv2_in1k", "regnety_64gf": "seer_ft_in1k",
                                                     "regnety_128gf": "swag_ft_in1k",
                                                     "regnety_256gf": "seer_ft_in1k",
                                                     # no published weights of these architectures
                                                     "regnetz_500mf": None, "regnetz_4gf": None,
                                                     "regnety_10b": None}[name]
        assert defaults == ([expected] if expected else []), name


def test_entries_agree_with_timms_pretrained_configs():
    """timm publishes the Hub files: same set of (architecture, tag), repo, licence, classes, preprocessing."""
    import timm
    from timm.models import get_pretrained_cfg

    m = load_manifest()
    ours = {f"{get_entry(e.model).timm_name}.{e.tag}": e for e in m.entries if e.hub is not None}
    assert {e.name for e in m.entries if e.hub is None} == {e.name for e in m.entries if e.tag == "tv_in1k"}
    timm_names = {e.timm_name for e in MODELS.values()}
    assert set(ours) == {n for n in timm.list_pretrained("regnet*") if n.split(".")[0] in timm_names}
    for name, e in ours.items():
        pc = get_pretrained_cfg(name)
        assert e.hub.repo_id == pc.hf_hub_id == f"timm/{name}", name
        assert (e.license, e.num_classes) == (pc.license, pc.num_classes), name
        if e.preprocessing_name.startswith("timm"):
            p = e.preprocessing
            assert (tuple(p["input_size"]), p["crop_pct"], p["interpolation"]) == (
                pc.input_size, pc.crop_pct, pc.interpolation), name
            assert tuple(p.get("test_input_size", ())) == tuple(pc.test_input_size or ()), name
        if e.origin is not None and e.origin.format != "pycls":
            assert e.origin.url == pc.url, name
    # every VISSL original timm knows is listed, but the one with VISSL's generic file name
    seer = {n for n in ours if ours[n].source == "vissl" and get_pretrained_cfg(n).url}
    assert {n for n in seer if ours[n].origin is None} == {"regnety_1280.seer"}
    assert get_pretrained_cfg("regnety_1280.seer").url.endswith("/model_final_checkpoint_phase0.torch")


def test_torchvision_entries_report_torchvisions_documented_metrics():
    """Every torchvision weight set (V1, V2, SWAG) is an entry, with torchvision's metrics and eval transform."""
    from torchvision.models import regnet as tvr
    from torchvision.transforms import InterpolationMode

    by_file = {w.url.rsplit("/", 1)[-1]: w for n in dir(tvr) if n.endswith("_Weights") for w in getattr(tvr, n)}
    tags = {"IMAGENET1K_V1": "tv_in1k", "IMAGENET1K_V2": "tv2_in1k", "IMAGENET1K_SWAG_E2E_V1": "swag_ft_in1k",
            "IMAGENET1K_SWAG_LINEAR_V1": "swag_lc_in1k"}
    listed = {e.origin.url.rsplit("/", 1)[-1]: e for e in load_manifest().entries if e.source == "torchvision"}
    assert set(listed) == set(by_file)
    for name, w in by_file.items():
        e = listed[name]
        assert e.tag == tags[w.name] and get_entry(e.model).torchvision_name == w.url.rsplit("/", 1)[-1].split(
            "-")[0].removesuffix("_swag").removesuffix("_lc"), name
    checked = 0
    for e in load_manifest().entries:
        if e.source != "torchvision":
            continue
        w = by_file[e.origin.url.rsplit("/", 1)[-1]]
        (rep,) = [r for r in e.reported if r.by == "torchvision"]
        metrics = w.meta["_metrics"]["ImageNet-1K"]
        assert (rep.top1, rep.top5) == (metrics["acc@1"], metrics["acc@5"]), e.name
        crop = w.transforms.keywords["crop_size"]
        resize = w.transforms.keywords.get("resize_size", 256)
        assert rep.input_size == crop and int(crop / e.preprocessing["crop_pct"]) == resize, e.name
        interpolation = w.transforms.keywords.get("interpolation", InterpolationMode.BILINEAR)  # its default
        assert rep.interpolation == e.preprocessing["interpolation"] == interpolation.value, e.name
        assert e.preprocessing["input_size"][1:] == [crop, crop], e.name
        checked += 1
    assert checked == 14 + 14 + 3 + 3  # tv_in1k, tv2_in1k, swag_ft_in1k, swag_lc_in1k


# pycls dev/model_error.json (the paper code's model zoo, commit 5719de6): (top1_err, top5_err) in percent
PYCLS_MODEL_ERROR = {
    "RegNetX-200MF": (31.088, 11.342), "RegNetX-400MF": (27.382, 9.076), "RegNetX-600MF": (25.864, 8.198),
    "RegNetX-800MF": (24.846, 7.592), "RegNetX-1.6GF": (23.038, 6.484), "RegNetX-3.2GF": (21.736, 5.862),
    "RegNetX-4.0GF": (21.356, 5.736), "RegNetX-6.4GF": (20.844, 5.434), "RegNetX-8.0GF": (20.728, 5.42),
    "RegNetX-12GF": (20.288, 5.284), "RegNetX-16GF": (19.956, 5.022), "RegNetX-32GF": (19.498, 4.878),
    "RegNetY-200MF": (29.658, 10.378), "RegNetY-400MF": (25.898, 8.07), "RegNetY-600MF": (24.54, 7.28),
    "RegNetY-800MF": (23.684, 6.846), "RegNetY-1.6GF": (22.066, 6.134), "RegNetY-3.2GF": (21.074, 5.454),
    "RegNetY-4.0GF": (20.64, 5.336), "RegNetY-6.4GF": (20.11, 5.1), "RegNetY-8.0GF": (20.052, 5.06),
    "RegNetY-12GF": (19.67, 4.856), "RegNetY-16GF": (19.608, 4.944), "RegNetY-32GF": (19.066, 4.568),
}


def test_pycls_entries_point_at_the_papers_model_zoo_and_report_its_errors():
    from pycls.models import model_zoo as zoo  # pinned test dependency: the paper's code

    seen = set()
    for e in load_manifest().entries:
        if e.tag != "pycls_in1k":
            continue
        display = get_entry(e.model).display
        assert e.origin.url == f"{zoo._URL_WEIGHTS}/{zoo._MODEL_ZOO_WEIGHTS[display]}", e.name
        rep = e.reported[0]
        assert (rep.by, rep.input_size, rep.crop_pct) == ("pycls", 224, 0.875)  # resize 256, crop 224
        top1_err, top5_err = PYCLS_MODEL_ERROR[display]
        assert (rep.top1, rep.top5) == (round(100 - top1_err, 3), round(100 - top5_err, 3)), e.name
        seen.add(display)
    assert seen == set(PYCLS_MODEL_ERROR)


def test_paper_is_set_per_source():
    m = load_manifest()
    cfg = m.get("regnety_16gf", "pycls_in1k").pretrained_cfg()
    assert (cfg["paper_name"], cfg["paper_ids"]) == ("Designing Network Design Spaces", "arXiv:2003.13678")
    assert m.get("regnety_16gf", "swag_ft_in1k").pretrained_cfg()["paper_ids"] == "arXiv:2201.08371"
    assert m.get("regnety_16gf", "deit_in1k").pretrained_cfg()["paper_ids"] == "arXiv:2012.12877"
    for tag in ("tv2_in1k", "sw_in12k_ft_in1k", "lion_in12k_ft_in1k"):  # no paper of their own: none claimed
        assert "paper_name" not in m.get("regnety_16gf", tag).pretrained_cfg(), tag
    assert "paper_name" not in m.get("regnety_32gf", "seer").pretrained_cfg()


def test_pretrained_table_rows():
    from regnet_zoo.weights.manifest import pretrained_table

    rows = pretrained_table(["RegNetY-16GF", "regnetx_200mf"])
    assert [r["name"] for r in rows][:2] == ["regnety_16gf.pycls_in1k", "regnety_16gf.deit_in1k"]
    assert rows[0]["default"] and not any(r["default"] for r in rows[1:-1]) and rows[-1]["default"]
    by_name = {r["name"]: r for r in rows}
    assert len(by_name) == len(load_manifest().for_model("regnety_16gf")) + 1
    x = by_name["regnetx_200mf.pycls_in1k"]
    assert (x["top1"], x["top5"]) == (round(100 - 31.088, 3), round(100 - 11.342, 3))
    assert (x["source"], x["license"], x["non_commercial"], x["input_size"], x["crop_pct"], x["interpolation"],
            x["hub_repo"], x["reported_by"], x["eval_size"]) == (
        "pycls", "mit", False, 224, 0.875, "bilinear", "timm/regnetx_002.pycls_in1k", "pycls", 224)
    swag = by_name["regnety_16gf.swag_ft_in1k"]
    assert swag["non_commercial"] and swag["license"] == "cc-by-nc-4.0" and swag["input_size"] == 384
    assert swag["pretrain_dataset"] == "instagram-3.6b" and swag["dataset"] == "imagenet-1k"
    assert by_name["regnety_16gf.sw_in12k"]["top1"] is None  # an 11821-class head: no ImageNet-1k accuracy
    v1 = by_name["regnety_16gf.tv_in1k"]  # torchvision's V1: no Hub copy, torchvision's file and eval transform
    assert (v1["license"], v1["input_size"], v1["crop_pct"], v1["interpolation"], v1["hub_repo"], v1["top1"]) == (
        "bsd-3-clause", 224, 0.875, "bilinear", None, 80.424)
    assert v1["origin_url"] == "https://download.pytorch.org/models/regnet_y_16gf-9e6ed7dd.pth"
    json.dumps(rows)  # the CLI prints it as JSON
    assert len(pretrained_table()) == len(load_manifest())


def test_tag_of_the_tv_twin_is_pointed_out():
    from regnet_zoo.weights import WeightsNotFoundError

    m = load_manifest()
    with pytest.raises(WeightsNotFoundError) as err:
        m.get("regnetx_400mf", "tv2_in1k")
    assert "regnetx_400mf_tv has these weights" in str(err.value)
    assert "create('regnetx_400mf_tv', pretrained='tv2_in1k')" in str(err.value)
    with pytest.raises(WeightsNotFoundError, match="create\\('regnetx_400mf', pretrained='pycls_in1k'\\)"):
        m.get("regnetx_400mf_tv", "pycls_in1k")
    with pytest.raises(WeightsNotFoundError) as err:  # no twin holds the tag: no hint
        m.get("regnetx_200mf", "tv2_in1k")
    assert "has these weights" not in str(err.value)


def test_preprocessing_becomes_timms_pretrained_cfg():
    from timm.data import resolve_data_config

    e = load_manifest().get("regnety_16gf", "swag_ft_in1k")
    cfg = e.pretrained_cfg()
    assert cfg["pool_size"] == (12, 12) and cfg["license"] == "cc-by-nc-4.0"
    data = resolve_data_config(pretrained_cfg=cfg)
    assert (data["input_size"], data["crop_pct"], data["interpolation"]) == ((3, 384, 384), 1.0, "bicubic")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["preprocessing"]["pycls"].update(crop_pct=1.5),
     "preprocessing/pycls/crop_pct: 1.5 is greater than the maximum of 1"),
    (lambda d: d["weights"][0].update(model="regnetx_999mf"), "model 'regnetx_999mf' is not a canonical registry"),
    (lambda d: d["weights"][1].update(default=False), "regnetx_400mf has 0 default entries"),
    (lambda d: d["weights"][0]["hub"].update(filename="pytorch_model.bin"), "does not match '\\\\.safetensors$'"),
    (lambda d: d["weights"][0].update(preprocessing="fancy"), "unknown preprocessing preset 'fancy'"),
    (lambda d: d["weights"].append(copy.deepcopy(d["weights"][0])), "duplicate (model, tag)"),
    (lambda d: d["weights"][0].update(paper="nobody"), "unknown paper 'nobody'"),
    (lambda d: d["papers"]["regnet"].update(ids="2003.13678"), "papers/regnet/ids: '2003.13678' does not match"),
    (lambda d: [d["weights"][0].pop(k) for k in ("hub", "origin")],  # neither: nothing to download
     "is not valid under any of the given schemas"),
])
def test_invalid_manifest_is_reported_precisely(doc, edit, message):
    bad = copy.deepcopy(doc)
    edit(bad)
    with pytest.raises(ManifestError) as err:
        parse_manifest(bad, "weights_manifest/manifest.json")
    assert message in str(err.value)
    assert "weights_manifest/manifest.json" in str(err.value)


def test_manifest_override_by_environment(doc, tmp_path, monkeypatch):
    small = dict(doc, weights=[w for w in doc["weights"] if w["model"] == "regnetx_200mf"])
    (tmp_path / "m.json").write_text(json.dumps(small))
    monkeypatch.setenv("REGNET_ZOO_MANIFEST", str(tmp_path / "m.json"))
    assert len(load_manifest()) == 1 and load_manifest().path == str(tmp_path / "m.json")
    (tmp_path / "m.json").write_text("{not json")
    os.utime(tmp_path / "m.json", ns=(1, 1))
    with pytest.raises(ManifestError, match="cannot read the weights manifest"):
        load_manifest()


def test_list_pretrained_shows_tags_and_defaults(capsys):
    from regnet_zoo.cli import main

    assert main(["list", "regnety_16gf", "--pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "regnety_16gf.pycls_in1k" and rows[0]["default"] is True
    swag = next(r for r in rows if r["tag"] == "swag_ft_in1k")
    assert swag["non_commercial"] is True and swag["input_size"] == 384 and not swag["default"]
    assert main(["list", "regnety_16gf", "--pretrained"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2].startswith("regnety_16gf.pycls_in1k *") and any("(NC)" in ln for ln in table)


@pytest.mark.slow
def test_the_wheel_ships_the_manifest(tmp_path):
    """A regular (non-editable) install finds the manifest inside the package."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    for name in ("pyproject.toml", "setup.py", "README.md", "regnet_zoo", "weights_manifest"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(ROOT / name, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("regnet_zoo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"regnet_zoo/weights_manifest/manifest.json", "regnet_zoo/weights_manifest/schema.json"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import regnet_zoo, regnet_zoo.weights.manifest as m; print(regnet_zoo.__file__); "
            "print(m.manifest_path()); print(len(m.load_manifest()))")
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("REGNET_ZOO_MANIFEST", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    pkg, path, n = res.stdout.split()
    assert pkg.startswith(str(site)) and path == str(site / "regnet_zoo" / "weights_manifest" / "manifest.json")
    assert n == "75"
