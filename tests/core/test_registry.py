"""Registry names and parameters against timm's and torchvision's own tables."""

import pytest
import torchvision
from timm.models.regnet import model_cfgs as timm_cfgs

from regnet_zoo.registry import MODELS, UnknownModelError, get_entry, list_models, split_name_tag


@pytest.mark.parametrize("name", [n for n, e in MODELS.items() if e.timm_name])
def test_parameters_equal_timm_table(name):
    e = MODELS[name]
    t = timm_cfgs[e.timm_name]
    c = e.cfg
    assert (c.depth, c.w0, c.wa, c.wm, c.group_width, c.se_ratio) == (t.depth, t.w0, t.wa, t.wm, t.group_size,
                                                                       t.se_ratio)
    assert (c.rounding == "torchvision") == bool(t.group_min_ratio)
    assert (c.bot_mul, c.activation, c.head_width) == (t.bottle_ratio, t.act_layer, t.num_features)
    assert (c.block == "z") == t.linear_out == (t.downsample is None)


def test_models_without_timm_twin_are_not_timm_models():
    import timm

    timm_names = set(timm.list_models())
    lonely = [e for e in MODELS.values() if e.timm_name is None]
    assert {e.name for e in lonely} == {"regnetz_4gf", "regnety_10b"}
    for e in lonely:
        assert not {a.lower() for a in e.aliases} & timm_names, e.name
    # timm's ByobNet "regnetz" family is another architecture: none of its names resolves here
    byob = [n for n in timm_names if n.startswith("regnetz_") and n not in timm_cfgs]
    assert {"regnetz_b16", "regnetz_c16", "regnetz_d32", "regnetz_e8"} <= set(byob)
    for n in byob:
        with pytest.raises(UnknownModelError):
            get_entry(n)


def test_torchvision_names_exist_in_torchvision():
    tv = set(torchvision.models.list_models(module=torchvision.models))
    names = {e.torchvision_name for e in MODELS.values() if e.torchvision_name}
    assert names <= tv
    assert {n for n in tv if n.startswith("regnet_")} == names  # every torchvision RegNet is reachable


@pytest.mark.parametrize("alias,canonical", [
    ("regnety_4.0gf", "regnety_4.0gf"), ("RegNetY-4.0GF", "regnety_4.0gf"), ("regnety_040", "regnety_4.0gf"),
    ("regnet_y_4gf", "regnety_4.0gf"), ("RegNetY-4000", "regnety_4.0gf"), ("REGNETX-8.0GF", "regnetx_8.0gf"),
    ("RegNetX-8000", "regnetx_8.0gf"), ("regnetx_8.0gf", "regnetx_8.0gf"), ("RegNetX-200MF", "regnetx_200mf"),
    ("RegNetX-200", "regnetx_200mf"), ("regnet_x_1_6gf", "regnetx_1.6gf"), ("regnetx_004_tv", "regnetx_400mf_tv"),
    ("regnet_x_400mf", "regnetx_400mf_tv"), ("regnet_y_8gf", "regnety_8.0gf_tv"), ("regnety_080", "regnety_8.0gf"),
    ("regnet_y_128gf", "regnety_128gf"), (" RegNetY-32GF ", "regnety_32gf"),
])
def test_aliases(alias, canonical):
    assert get_entry(alias).name == canonical


def test_aliases_are_unique_across_entries():
    seen = {}
    for e in MODELS.values():
        for a in e.aliases:
            key = a.lower().replace("-", "_")
            assert seen.setdefault(key, e.name) == e.name, a


def test_unknown_name_lists_closest():
    with pytest.raises(UnknownModelError, match="unknown model 'regnetx_8gff'; closest: regnetx_8.0gf"):
        get_entry("regnetx_8gff")
    with pytest.raises(UnknownModelError, match="unknown model 'resnet50'"):
        get_entry("resnet50")


def test_list_models_patterns():
    assert len(list_models(paper_only=True)) == 24
    x = list_models("regnetx*")
    assert x[0] == "regnetx_200mf" and len(x) == 13 and all(n.startswith("regnetx") for n in x)
    assert list_models("RegNetY-*GF", paper_only=True)[-1] == "regnety_32gf"
    assert list_models("*_tv") == ["regnetx_400mf_tv", "regnety_800mf_tv", "regnety_8.0gf_tv"]
    assert list_models("nothing*") == []


def test_name_and_tag():
    assert split_name_tag("regnety_4.0gf.tv2_in1k")[0].name == "regnety_4.0gf"
    assert split_name_tag("regnety_4.0gf.tv2_in1k")[1] == "tv2_in1k"
    assert split_name_tag("regnety_040.pycls_in1k") == (MODELS["regnety_4.0gf"], "pycls_in1k")
    assert split_name_tag("RegNetY-4.0GF") == (MODELS["regnety_4.0gf"], None)
    with pytest.raises(UnknownModelError):
        split_name_tag("regnety_4.1gf.tv2_in1k")
