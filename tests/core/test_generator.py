"""Generator: validation, torchvision's rounding variant, the vectorised batch, no torch."""

import subprocess
import sys

import numpy as np
import pytest

from regnet_zoo.config import AnyNetCfg, RegNetCfg, StageCfg, cfg_from_dict
from regnet_zoo.generator import (
    adjust_block_compatibility,
    generate_regnet,
    generate_regnet_batch,
    quantized_linear_widths,
)
from regnet_zoo.registry import MODELS


def test_quantized_linear_by_hand():
    # d=4, w0=24, wa=24, wm=2: u = 24, 48, 72, 96; k = round(log2(u/24)) = 0, 1, 2 (log2 3 = 1.58), 2
    b = quantized_linear_widths(24, 24.0, 2.0, 4)
    assert b.widths_cont.tolist() == [24, 48, 72, 96]
    assert b.exponents.tolist() == [0, 1, 2, 2]
    assert b.widths.tolist() == [24, 48, 96, 96]
    assert b.num_stages == 3 and b.total_stages == 3


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(w0=20), "w0"),
        (dict(w0=0), "w0"),
        (dict(wm=1.0), "wm"),
        (dict(wm=0.5), "wm"),
        (dict(wa=-1.0), "wa"),
        (dict(depth=0), "depth"),
        (dict(depth=2.5), "depth"),
        (dict(group_width=0), "group_width"),
        (dict(bot_mul=0), "bot_mul"),
        (dict(se_ratio=1.5), "se_ratio"),
        (dict(rounding="numpy"), "rounding"),
    ],
)
def test_invalid_parameters_name_the_parameter(kwargs, param):
    base = dict(depth=13, w0=24, wa=36.44, wm=2.49, group_width=8)
    with pytest.raises(ValueError, match=param):
        RegNetCfg(**{**base, **kwargs})


def test_stage_cfg_rejects_incompatible_group_width():
    with pytest.raises(ValueError, match="multiple of group_width"):
        StageCfg(depth=1, width=40, group_width=16)


def test_compatibility_caps_and_rounds():
    # group width 64 > bottleneck 48 -> capped to 48; 200 with g=48 -> round(200/48)=4 -> 192
    ws, bs, gs = adjust_block_compatibility([48, 200], [1.0, 1.0], [64, 48])
    assert (ws, gs) == ([48, 192], [48, 48])
    # bottleneck multiplier 0.25: w_b = 56 -> multiple of g=16 is 64 (round(3.5) = 4) -> w = 256
    ws, _, gs = adjust_block_compatibility([224], [0.25], [16])
    assert ws == [256] and gs == [16]


def _torchvision_stage_params(cfg: RegNetCfg):
    from torchvision.models.regnet import BlockParams

    p = BlockParams.from_init_params(depth=cfg.depth, w_0=cfg.w0, w_a=cfg.wa, w_m=cfg.wm,
                                     group_width=cfg.group_width, se_ratio=cfg.se_ratio or None)
    return p.depths, p.widths, p.group_widths


TV_NAMES = sorted({e.torchvision_name for e in MODELS.values() if e.torchvision_name})


@pytest.mark.parametrize("tv_name", TV_NAMES)
def test_torchvision_names_build_torchvision_architecture(tv_name):
    """torchvision's own generator (BlockParams) is the reference for every torchvision model."""
    from regnet_zoo.registry import get_entry

    cfg = get_entry(tv_name).cfg
    arch = cfg.to_anynet()
    assert (arch.depths, arch.widths, arch.group_widths) == tuple(_torchvision_stage_params(cfg))


def test_tv_variants_differ_from_paper_exactly_where_torchvision_does():
    for e in MODELS.values():
        if e.cfg.rounding == "torchvision":
            paper = MODELS[e.name.removesuffix("_tv")].cfg.to_anynet()
            assert e.cfg.to_anynet().widths != paper.widths, e.name
    assert {n for n, e in MODELS.items() if e.cfg.rounding == "torchvision"} == {
        "regnetx_400mf_tv", "regnety_800mf_tv", "regnety_8.0gf_tv"}


def test_batch_generator_equals_scalar_generator():
    rng = np.random.default_rng(0)
    n = 2000
    d = rng.integers(1, 40, n)
    w0 = rng.integers(1, 32, n) * 8
    wa = np.round(rng.uniform(0, 256, n), 2)
    wm = np.round(rng.uniform(1.5, 3.0, n), 2)
    g = rng.choice([1, 2, 4, 8, 16, 32], n)
    b = rng.choice([1.0, 0.5, 0.25], n)
    out = generate_regnet_batch(w0, wa, wm, d, g, b)
    for i in range(n):
        p = generate_regnet(int(w0[i]), float(wa[i]), float(wm[i]), int(d[i]), int(g[i]), float(b[i]))
        k = len(p.depths)
        assert out["depths"][i, :k].tolist() == p.depths
        assert out["widths"][i, :k].tolist() == p.widths
        assert out["group_widths"][i, :k].tolist() == p.group_widths
        assert not out["depths"][i, k:].any()


def test_config_dict_round_trip_and_unknown_keys():
    cfg = MODELS["regnety_4.0gf"].cfg
    assert cfg_from_dict(cfg.to_dict()) == cfg
    arch = cfg.to_anynet()
    assert cfg_from_dict(arch.to_dict()) == arch
    with pytest.raises(ValueError, match="regnet config: unknown keys \\[.width.\\]"):
        cfg_from_dict({**cfg.to_dict(), "width": 3})
    assert isinstance(arch, AnyNetCfg) and hash(arch) == hash(cfg_from_dict(arch.to_dict()))


def test_pure_modules_import_no_torch():
    code = ("import sys; import regnet_zoo.generator, regnet_zoo.counting, regnet_zoo.config, "
            "regnet_zoo.registry, regnet_zoo; regnet_zoo.complexity('regnetx_200mf'); "
            "bad = [m for m in ('torch', 'timm', 'lightning') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("d,message", [
    ({"type": "anynet", "stages": [{"depth": 1, "width": 8, "gw": 8}]}, r"stages\[0\]: unknown keys \['gw'\]"),
    ({"type": "anynet", "stages": [{"depth": 1, "width": 8}]}, r"stages\[0\]: missing required keys \['group_width'\]"),
    ({"type": "anynet"}, r"anynet config: missing required keys \['stages'\]"),
    ({"depth": 13, "wa": 36.44, "wm": 2.49, "group_width": 8}, r"regnet config: missing required keys \['w0'\]"),
    ({"depth": 13, "w0": 24, "wa": 36.44, "wm": 2.49}, r"missing required keys \['group_width'\]"),
    ({"type": "resnet"}, "config type must be 'regnet' or 'anynet'"),
])
def test_config_dict_errors_say_what_and_where(d, message):
    with pytest.raises(ValueError, match=message):
        cfg_from_dict(d)
