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
    assert len(m) == len(doc["weights"]) == 61
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
                                                     "regnety_256gf": "seer_ft_in1k"}[name]
        assert defaults == [expected], name


def test_entries_agree_with_timms_pretrained_configs():
    """timm publishes these files: same set of (architecture, tag), repo, licence, classes, preprocessing."""
    import timm
    from timm.models import get_pretrained_cfg

    m = load_manifest()
    ours = {f"{get_entry(e.model).timm_name}.{e.tag}": e for e in m.entries}
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


def test_torchvision_entries_report_torchvisions_documented_metrics():
    from torchvision.models import regnet as tvr

    by_file = {w.url.rsplit("/", 1)[-1]: w for n in dir(tvr) if n.endswith("_Weights") for w in getattr(tvr, n)}
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
        checked += 1
    assert checked == 14 + 3 + 3  # tv2_in1k, swag_ft_in1k, swag_lc_in1k


def test_pycls_entries_point_at_the_papers_model_zoo():
    zoo = pytest.importorskip("pycls.models.model_zoo")
    for e in load_manifest().entries:
        if e.tag != "pycls_in1k":
            continue
        display = get_entry(e.model).display
        assert e.origin.url == f"{zoo._URL_WEIGHTS}/{zoo._MODEL_ZOO_WEIGHTS[display]}", e.name
        rep = e.reported[0]
        assert (rep.by, rep.input_size, rep.crop_pct) == ("pycls", 224, 0.875)  # resize 256, crop 224
        assert 68 < rep.top1 < 82 and rep.top5 > rep.top1


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
    assert rows["regnety_16gf"][0] == "pycls_in1k (default)" and "swag_ft_in1k" in rows["regnety_16gf"]


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
    assert n == "61"
